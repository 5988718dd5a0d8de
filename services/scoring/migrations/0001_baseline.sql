-- Baseline of the scoring database. Every timestamp is stored and compared in UTC,
-- whatever the server's default, so business dates never shift with a host setting.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET timezone TO ''UTC''', current_database());
END
$$;

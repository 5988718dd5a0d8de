-- End of day (docs/ledger.md "End of day"): the summary of every closed business date,
-- and the SQL helpers its set-based steps share with the code's own rules.

-- One row per closed business date: the encoded EndOfDaySummary (ledger.proto) that a
-- second run for the same date returns (replayed = true).
CREATE TABLE end_of_day_runs (
    business_date   date PRIMARY KEY,
    summary         bytea NOT NULL,
    start_time      timestamptz NOT NULL,
    finish_time     timestamptz NOT NULL
);

-- Rounds to a whole number, half to even (banker's rounding), as
-- microloan_domain::loan::round_half_even_fen does. Postgres' round() on numeric rounds
-- half away from zero, so the tie is decided explicitly.
CREATE FUNCTION ledger_round_half_even(x numeric) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (sign(x) * CASE
        WHEN abs(x) - floor(abs(x)) = 0.5 THEN floor(abs(x)) + mod(floor(abs(x)), 2)
        ELSE round(abs(x))
    END)::bigint
$$;

-- The platform sub-account (0..63) of a customer: FNV-1a over the customer id's text
-- modulo 64, exactly book::sub_account_for (microloan_events::outbox::customer_hash), so
-- end of day posts to the sub-accounts every other posting of the customer uses.
CREATE FUNCTION ledger_sub_account(customer uuid) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    hash bigint := 2166136261;
    bytes bytea := convert_to(customer::text, 'UTF8');
BEGIN
    FOR i IN 0 .. length(bytes) - 1 LOOP
        hash := ((hash # get_byte(bytes, i)) * 16777619) % 4294967296;
    END LOOP;
    RETURN (hash % 64)::integer;
END
$$;

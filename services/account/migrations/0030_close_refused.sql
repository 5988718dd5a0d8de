-- Borrow's and Repay's closing statement (src/store/lines.rs `close_unchanged`) runs on
-- its own, without BEGIN and COMMIT: one round trip instead of three. It claims the
-- request key first, then bumps the line only if the line is still at the version the
-- response was built from. When the key was claimed but the line had moved, the
-- statement must leave nothing behind, so it calls this function, whose error rolls the
-- whole statement back (a plain expression would be folded into an error at planning).
CREATE FUNCTION account_close_refused() RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'the credit line changed since the response was built'
        USING ERRCODE = 'MLA01';
END
$$;

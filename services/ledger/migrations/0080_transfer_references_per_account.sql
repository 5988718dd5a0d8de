-- The statement-level reference check of `transfers` (migration 0060) looks each
-- referenced account up once per statement instead of once per row and column
-- (docs/ledger.md "Performance"). End of day's interest statement inserts one transfer
-- per active loan, all crediting the same 64 income sub-accounts: 0060's check probed
-- `accounts_pkey` twice per row (20,000 probes for 10,000 loans), this one once per
-- distinct account (10,064); a batch of 1,000 transfers between two accounts now costs
-- two probes. Same rule, same error (SQLSTATE 23503, the first offending transfer).
CREATE OR REPLACE FUNCTION ledger_transfers_reference_existing_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    missing record;
    unknown uuid;
BEGIN
    SELECT r.account INTO unknown
    FROM (SELECT debit_account_id AS account FROM new_transfers
          UNION SELECT credit_account_id FROM new_transfers) r
    WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = r.account)
    LIMIT 1;
    IF FOUND THEN
        SELECT n.id, n.debit_account_id, n.credit_account_id, n.pending_id INTO missing
        FROM new_transfers n
        WHERE n.debit_account_id = unknown OR n.credit_account_id = unknown
        LIMIT 1;
    ELSE
        SELECT n.id, n.debit_account_id, n.credit_account_id, n.pending_id INTO missing
        FROM new_transfers n
        WHERE n.pending_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM transfers p WHERE p.id = n.pending_id)
        LIMIT 1;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'transfer % names a missing account or pending transfer', missing.id
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('debit %s, credit %s, pending %s', missing.debit_account_id,
                                  missing.credit_account_id, missing.pending_id);
    END IF;
    RETURN NULL;
END
$$;

-- Each loan's platform sub-account (0..63, ledger_sub_account of its customer), stored
-- once when the loan is booked instead of computed by the plpgsql FNV-1a for every
-- active loan in both of end of day's accrual statements (docs/ledger.md
-- "Performance": about a third of reading the book for the interest accrual).
-- Generated from customer_id, so it can never disagree with book::sub_account_for.
ALTER TABLE loans
    ADD COLUMN sub_account integer GENERATED ALWAYS AS (ledger_sub_account(customer_id)) STORED;

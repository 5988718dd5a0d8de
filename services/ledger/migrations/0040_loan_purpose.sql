-- Loan purpose (issue #8, common/v1/loan.proto LoanPurpose): what the money is for, as
-- Disburse received it, so the portfolio report can break the book down by purpose.
-- LoanPurpose numbers: 1 CONSUMPTION, 2 EDUCATION, 3 MEDICAL, 4 TRAVEL,
-- 5 HOME_IMPROVEMENT, 6 OTHER, 7 SMALL_BUSINESS; UNSPECIFIED (0) is never stored.
--
-- Loans booked before this column existed were disbursed without a declared purpose;
-- they become OTHER (6), the one value that claims nothing about them (docs/ledger.md).
-- A constant default adds the column without rewriting the table. Disburse always
-- writes the purpose explicitly; the default only serves the rows already there.
ALTER TABLE loans
    ADD COLUMN purpose smallint NOT NULL DEFAULT 6 CHECK (purpose BETWEEN 1 AND 7);

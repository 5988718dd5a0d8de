-- Room on each page for updated row versions: account balances and instalment
-- amounts change every day (end of day touches every active loan's receivable and
-- instalment; postings touch their accounts), and none of those columns is indexed,
-- so with free space on the page an update is HOT (no index entry written, and the
-- old version is pruned on the page without waiting for vacuum). Applies to pages
-- written from now on. Measured in docs/ledger.md "Performance".
ALTER TABLE accounts SET (fillfactor = 80);
ALTER TABLE installments SET (fillfactor = 80);

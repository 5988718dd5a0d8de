-- ledger_round_half_even (migration 0030) inlined into the statements that call it.
-- Postgres inlines a one-expression SQL function only when it can prove a STRICT
-- function's body returns NULL on NULL input, which a CASE over its argument defeats:
-- every call then went through the SQL-function executor, about 2 us each (100,000
-- calls: 220 ms of backend CPU, inlined 70 ms), once per active loan in end of day's
-- interest statement and once per overdue loan in the penalty one. The body already
-- returns NULL for NULL (sign(NULL) * … is NULL), so declaring it CALLED ON NULL INPUT
-- changes no result and lets the planner inline it (docs/ledger.md "Performance").
ALTER FUNCTION ledger_round_half_even(numeric) CALLED ON NULL INPUT;

-- The review's baseline score (store::lines::review_inputs): the latest application or
-- limit-increase decision of a customer. decisions_customer (customer_id, decide_time)
-- made it walk back through every later decision, a heap fetch each, and each month
-- adds a PORTFOLIO_REVIEW and drawdowns. Partial: only the rare application (1) and
-- limit-increase (2) decisions are indexed, so Evaluate's inserts of the others pay
-- nothing for it.
CREATE INDEX decisions_baseline ON decisions (customer_id, decide_time)
    WHERE purpose IN (1, 2);

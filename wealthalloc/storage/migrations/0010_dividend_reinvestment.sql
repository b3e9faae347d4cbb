-- 0010 dividend reinvestment: the symbols whose dividends a portfolio reinvests.
-- Each reinvested dividend is a purchase, so a reinvesting account blocks harvesting a loss on
-- the same (or a substantially identical) security in any of the taxpayer's accounts.
ALTER TABLE portfolios
    ADD COLUMN dividend_reinvestment TEXT[] NOT NULL DEFAULT '{}'
        CHECK (coalesce(array_length(dividend_reinvestment, 1), 0) <= 500);

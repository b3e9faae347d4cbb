-- 0021 portfolios by user: every portfolio of a user, closed ones included.
--
-- The wash-sale queries find a user's (or a household's) portfolios first, then their lots and
-- realized losses through the (portfolio, symbol) indexes. Losses realized in a portfolio since
-- closed still count, so that lookup cannot use idx_portfolios_user, which holds open portfolios
-- only; without this index it read the whole table each time.
CREATE INDEX idx_portfolios_user_all ON portfolios (user_id);

-- 0008 the purchase a lot came from.
--
-- When only part of a lot replaces a wash-sale loss, the shares are split off into a lot of their
-- own. purchase_lot_id names the lot of the purchase they came from (NULL: the lot is a purchase of
-- its own), because the rest of the purchase a sale's shares came from never replaces that sale's
-- loss: a block of shares is not its own replacement.
ALTER TABLE lots ADD COLUMN purchase_lot_id UUID REFERENCES lots (id);

-- 0015 lots that were not bought: gifts and inheritances (IRS Publication 551).
--
-- source 'gift': cost_basis is the donor's adjusted basis (plus the gift tax due to the
-- appreciation), holding_period_start the donor's acquisition date, acquired_at the date of the
-- gift. loss_basis is set when the fair market value at the gift was below the donor's basis: the
-- basis to figure a loss, of the shares still held (a sale relieves it pro rata, like cost_basis).
-- source 'inherited': cost_basis is the fair market value at the date of death (acquired_at) or at
-- the alternate valuation date; always_long says every sale of it is long-term.
-- Neither is a purchase, so neither is ever the replacement shares of a wash sale.
ALTER TABLE lots DROP CONSTRAINT lots_source_check;
ALTER TABLE lots ADD CONSTRAINT lots_source_check
    CHECK (source IN ('buy', 'transfer_in', 'harvest_replacement', 'gift', 'inherited'));
ALTER TABLE lots ADD COLUMN loss_basis NUMERIC(20,4);
ALTER TABLE lots ADD CONSTRAINT lots_loss_basis_check
    CHECK (loss_basis IS NULL OR (loss_basis >= 0 AND source = 'gift'));
ALTER TABLE lots ADD COLUMN always_long BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE lots ADD CONSTRAINT lots_always_long_check CHECK (NOT always_long OR source = 'inherited');

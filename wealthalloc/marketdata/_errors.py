class MarketDataError(Exception):
    """Market data cannot answer; the message says what is missing."""


class UnknownSymbolError(MarketDataError):
    pass


class NoPriceError(MarketDataError):
    pass

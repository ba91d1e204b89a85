"""The simulated account's records, spelt field by field as OKX documents them, and its terms.

An order of the `orders` channel, a position of the `positions` channel, a balance detail and
the account record of the `account` channel (the same rows REST serves), as they are when
created; account.py updates them as orders fill. Every documented field is present, "" where it
does not apply (a spot order has no TP/SL, no options prices, no fill before its first fill), and
the JSON booleans OKX sends in each balance detail, so the collector sees the shapes OKX sends.
Pure functions of their arguments.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .market import Market


# The account's starting state and terms: what every seed starts from.
START_BALANCES = {
    "USDT": "100000",
    "USDC": "50000",
    "BTC": "1.5",
    "ETH": "20",
    "SOL": "300",
    "DOGE": "200000",
    "TON": "5000",
    "UNI": "3000",
    "PEPE": "4000000000",
}
TAKER_FEE = Decimal("0.001")
MAKER_FEE = Decimal("0.0008")
MARGIN_INSTS = ("BTC-USDT", "ETH-USDT")


def dstr(d: Decimal) -> str:
    """Decimal -> OKX-style string: no exponent, no trailing zeros."""
    s = format(d.normalize(), "f") if d else "0"
    return s


def order_record(
    m: Market,
    ord_id: str,
    seq: int,
    ord_type: str,
    is_buy: bool,
    margin: bool,
    px: Decimal | None,
    sz: Decimal,
    ask: Decimal,
    ts: int,
) -> dict[str, Any]:
    """A new order (state `live`) as the orders channel pushes it."""
    quote = m.spec.quote
    return {
        # the orders channel's documented field set; "" where a field does not apply (a
        # spot order has no TP/SL, no options prices, no fill before its first fill)
        "instType": "MARGIN" if margin else "SPOT",
        "instId": m.inst_id,
        "tgtCcy": "",
        "ccy": "",
        "ordId": ord_id,
        "clOrdId": f"sim{seq}",
        "tag": "",
        "px": dstr(px) if px is not None else "",
        "pxUsd": "",
        "pxVol": "",
        "pxType": "",
        "sz": dstr(sz),
        "notionalUsd": dstr((sz * ask).quantize(Decimal("1e-8")).normalize())
        if quote in ("USDT", "USDC")
        else "",
        "pnl": "0",
        "ordType": ord_type,
        "side": "buy" if is_buy else "sell",
        "posSide": "net" if margin else "",
        "tdMode": "cross" if margin else "cash",
        "accFillSz": "0",
        "fillNotionalUsd": "",
        "avgPx": "",
        "state": "live",
        "lever": "3" if margin else "",
        "attachAlgoClOrdId": "",
        "tpTriggerPx": "",
        "tpTriggerPxType": "",
        "tpOrdPx": "",
        "slTriggerPx": "",
        "slTriggerPxType": "",
        "slOrdPx": "",
        "attachAlgoOrds": [],
        "linkedAlgoOrd": {"algoId": ""},
        "stpId": "",
        "stpMode": "cancel_maker",
        "feeCcy": m.spec.base if is_buy else quote,
        "fee": "0",
        "rebateCcy": quote,
        "rebate": "0",
        "source": "",
        "category": "normal",
        "isTpLimit": "false",
        "fillPx": "",
        "tradeId": "",
        "fillSz": "0",
        "fillPnl": "0",
        "fillTime": "",
        "fillFee": "0",
        "fillFeeCcy": "",
        "fillPxVol": "",
        "fillPxUsd": "",
        "fillMarkVol": "",
        "fillFwdPx": "",
        "fillMarkPx": "",
        "fillIdxPx": "",
        "execType": "",
        "reduceOnly": "false",
        "cancelSource": "",
        "cancelSourceReason": "",
        "amendSource": "",
        "amendResult": "",
        "reqId": "",
        "quickMgnType": "",
        "algoClOrdId": "",
        "algoId": "",
        "lastPx": m.fpx(m.last_px),
        "tradeQuoteCcy": quote,
        "code": "0",
        "msg": "",
        "uTime": str(ts),
        "cTime": str(ts),
    }


def position_record(m: Market, n: int, ts: int) -> dict[str, Any]:
    """A new flat position (the `n`-th of the account) as the positions channel pushes it."""
    return {
        "instType": "MARGIN",
        "mgnMode": "cross",
        "posId": str(300_000_000 + n * 17 + 1),
        "posSide": "net",
        "pos": "0",
        "baseBal": "",
        "quoteBal": "",
        "posCcy": m.spec.base,
        "availPos": "0",
        "avgPx": "",
        "upl": "0",
        "uplRatio": "0",
        "instId": m.inst_id,
        "lever": "3",
        "liqPx": "",
        "markPx": "",
        "imr": "",
        "margin": "",
        "mgnRatio": "",
        "mmr": "",
        "liab": "",
        "liabCcy": m.spec.quote,
        "interest": "0",
        "tradeId": "",
        "notionalUsd": "",
        "optVal": "",
        "adl": "1",
        "ccy": m.spec.quote,
        "last": "",
        "realizedPnl": "0",
        "pnl": "0",
        "fee": "0",
        "cTime": str(ts),
        "uTime": str(ts),
        "pTime": str(ts),
        # the rest of the documented set: "" where it does not apply to a spot margin
        # position (options greeks, funding, spot hedging), [] for the close algos
        "baseBorrowed": "",
        "baseInterest": "",
        "quoteBorrowed": "",
        "quoteInterest": "",
        "bePx": "",
        "bizRefId": "",
        "bizRefType": "",
        "closeOrderAlgo": [],
        "deltaBS": "",
        "deltaPA": "",
        "gammaBS": "",
        "gammaPA": "",
        "thetaBS": "",
        "thetaPA": "",
        "vegaBS": "",
        "vegaPA": "",
        "fundingFee": "0",
        "idxPx": "",
        "liqPenalty": "0",
        "maxSpotInUseAmt": "",
        "clSpotInUseAmt": "",
        "spotInUseAmt": "",
        "spotInUseCcy": "",
        "nonSettleAvgPx": "",
        "settledPnl": "",
        "pendingCloseOrdLiabVal": "",
        "uplLastPx": "0",
        "uplRatioLastPx": "0",
        "usdPx": "",
        "realizedPnlRatio": "",
    }


def balance_detail_record(
    ccy: str, cash: Decimal, frozen: Decimal, avail: Decimal, eq_usd: str, u_time: int
) -> dict[str, Any]:
    """One currency's detail of the account channel (and of REST /account/balance)."""
    # The documented detail set of a spot-mode account: "" where OKX marks a field
    # inapplicable to the account level, and the two JSON booleans OKX sends in every
    # detail (collateralEnabled, and the deprecated collateralRestrict).
    return {
        "ccy": ccy,
        "eq": dstr(cash),
        "cashBal": dstr(cash),
        "availBal": dstr(avail),
        "frozenBal": dstr(frozen),
        "ordFrozen": dstr(frozen),
        "availEq": "",
        "isoEq": "",
        "disEq": eq_usd,
        "fixedBal": "0",
        "liab": "",
        "upl": "",
        "uplLiab": "",
        "crossLiab": "",
        "rewardBal": "0",
        "isoLiab": "",
        "mgnRatio": "",
        "imr": "",
        "mmr": "",
        "interest": "",
        "twap": "0",
        "frpType": "0",
        "maxLoan": "",
        "eqUsd": eq_usd,
        "borrowFroz": "",
        "notionalLever": "",
        "stgyEq": "0",
        "isoUpl": "",
        "spotInUseAmt": "",
        "clSpotInUseAmt": "",
        "maxSpotInUse": "",
        "spotIsoBal": "0",
        "smtSyncEq": "0",
        "spotCopyTradingEq": "0",
        "spotBal": dstr(cash),
        "openAvgPx": "",
        "accAvgPx": "",
        "spotUpl": "",
        "spotUplRatio": "",
        "totalPnl": "",
        "totalPnlRatio": "",
        "colRes": "0",
        "colBorrAutoConversion": "0",
        "collateralRestrict": False,
        "collateralEnabled": False,
        "autoLendStatus": "unsupported" if ccy in ("PEPE", "TON") else "off",
        "autoLendMtAmt": "0",
        "uTime": str(u_time),
    }


def account_record(
    u_time: int, total_eq: str, frozen_usd: Decimal, details: list[dict[str, Any]]
) -> dict[str, Any]:
    """The account channel's record (and REST /account/balance's row) around its details."""
    return {
        "uTime": str(u_time),
        "totalEq": total_eq,
        "isoEq": "",
        "adjEq": total_eq,
        "availEq": "",
        "ordFroz": dstr(frozen_usd.quantize(Decimal("1e-8")).normalize()),
        "imr": "0",
        "mmr": "0",
        "borrowFroz": "0",
        "mgnRatio": "",
        "notionalUsd": "0",
        "notionalUsdForBorrow": "0",
        "notionalUsdForSwap": "",
        "notionalUsdForFutures": "",
        "notionalUsdForOption": "0",
        "upl": "",
        "delta": "",
        "deltaLever": "",
        "deltaNeutralStatus": "0",
        "details": details,
    }


class Order:
    """A live order of the account: its record (as pushed) and what is left to fill."""

    __slots__ = ("rec", "remaining", "px", "is_buy", "market", "margin")

    def __init__(
        self, rec: dict, px: Decimal | None, sz: Decimal, is_buy: bool, market: Market, margin: bool
    ) -> None:
        self.rec = rec
        self.px = px
        self.remaining = sz
        self.is_buy = is_buy
        self.market = market
        self.margin = margin

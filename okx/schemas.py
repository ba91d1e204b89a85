"""What OKX documents for each record it sends: one schema per record kind, shared by the
WebSocket parser (okx/parse.py) and the REST row readers (okx/rest/rows.py), and the public
entry `validate_row(kind_or_channel, row) -> str | None` (None = valid, else the reason).

The rules (DEC, SDEC, ID, MS, ... and what each accepts) and `check()` are in
okx/schema_rules.py; docs/validation.md says why each rule is what it is. This module is a
little over 400 lines because it is the field tables of OKX's documentation, one line per field:
splitting them would only scatter one list.
"""

from __future__ import annotations

from typing import Any

from okx.schema_rules import (
    BOOL,
    DEC,
    DEC_E,
    ID,
    ID_E,
    INT64,
    JINT,
    LIST,
    MAX_DIGITS,
    MAX_ID_DIGITS,
    MAX_MS_DIGITS,
    MS,
    MS_E,
    NSTR,
    OBJ,
    SDEC,
    SDEC_E,
    SID,
    STR,
    Rule,
    Schema,
    check,
    check_levels,
)

__all__ = [
    "INT64",
    "MAX_DIGITS",
    "MAX_ID_DIGITS",
    "MAX_MS_DIGITS",
    "SCHEMAS",
    "Schema",
    "check",
    "check_candle",
    "check_levels",
    "validate_row",
]

# ----- enums (okx-v5-protocol.md §4, OKX v5 docs) --------------------------------------------

SIDE = frozenset({"buy", "sell"})
POS_SIDE = frozenset({"long", "short", "net", ""})  # "" on spot orders
INST_TYPE = frozenset({"SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"})
ORDER_STATE = frozenset({"live", "partially_filled", "filled", "canceled", "mmp_canceled"})
EXEC_TYPE = frozenset({"T", "M", ""})  # taker, maker, "" before any fill
ORD_TYPE = frozenset(
    {
        "market",
        "limit",
        "post_only",
        "fok",
        "ioc",
        "optimal_limit_ioc",
        "mmp",
        "mmp_and_post_only",
        "op_fok",
        "elp",
    }
)
TD_MODE = frozenset({"cross", "isolated", "cash", "spot_isolated", ""})
MGN_MODE = frozenset({"cross", "isolated", ""})
TRADE_SOURCE = frozenset({"0", "1"})  # 0 normal order, 1 enhanced liquidity program
CONFIRM = frozenset({"0", "1"})
BOOK_ACTION = frozenset({"snapshot", "update"})
TRUE_FALSE = frozenset({"true", "false", ""})  # reduceOnly, isTpLimit: strings, not booleans
EVENT_TYPE = frozenset(
    {
        "snapshot",
        "event_update",
        "filled",
        "delivered",
        "exercised",
        "transferred",
        "liquidation",
        "claw_back",
        "adl",
        "funding_fee",
        "adjust_margin",
        "set_leverage",
        "interest_deduction",
        "settlement",
    }
)

# ----- schemas, one per record kind (WebSocket and REST alike) -------------------------------

TRADE: Schema = (
    ("instId", NSTR, True),
    ("tradeId", ID, True),
    ("px", DEC, True),
    ("sz", DEC, True),
    ("side", SIDE, True),
    ("ts", MS, True),
    ("count", ID, False),  # trades only: fills aggregated into this message
    ("source", TRADE_SOURCE, False),
    ("seqId", JINT, False),
)

TICKER: Schema = (
    ("instId", NSTR, True),
    ("ts", MS, True),
    ("instType", INST_TYPE, False),
    ("last", DEC, False),
    ("lastSz", DEC_E, False),
    ("askPx", DEC_E, False),  # "" when the side is empty
    ("askSz", DEC_E, False),
    ("bidPx", DEC_E, False),
    ("bidSz", DEC_E, False),
    ("open24h", DEC_E, False),
    ("high24h", DEC_E, False),
    ("low24h", DEC_E, False),
    ("volCcy24h", DEC_E, False),
    ("vol24h", DEC_E, False),
    ("sodUtc0", DEC_E, False),
    ("sodUtc8", DEC_E, False),
)

# The non-level fields of a book push; levels are checked by check_levels.
BOOK: Schema = (
    ("asks", LIST, True),
    ("bids", LIST, True),
    ("ts", MS, True),
    ("seqId", JINT, False),
    ("prevSeqId", JINT, False),
    ("checksum", JINT, False),
    ("instId", NSTR, False),
)
# Incremental channels chain by seqId/prevSeqId: both or neither (2022's feeds had neither;
# validate_row and the parser check the pairing).
BOOK_INCREMENTAL: Schema = (
    ("asks", LIST, True),
    ("bids", LIST, True),
    ("ts", MS, True),
    ("seqId", JINT, False),
    ("prevSeqId", JINT, False),
    ("checksum", JINT, False),
    ("instId", NSTR, False),
)
BOOK_PUSHED: Schema = (  # books5, bbo-tbt: the whole short book each push, with its seqId
    ("asks", LIST, True),
    ("bids", LIST, True),
    ("ts", MS, True),
    ("seqId", JINT, False),
    ("checksum", JINT, False),
    ("instId", NSTR, False),
)

ORDER: Schema = (
    ("instType", INST_TYPE, True),
    ("instId", NSTR, True),
    ("ordId", ID, True),
    ("state", ORDER_STATE, True),
    ("uTime", MS, True),
    ("cTime", MS, True),
    ("clOrdId", STR, False),
    ("tag", STR, False),
    ("ccy", STR, False),
    ("tgtCcy", STR, False),
    ("px", DEC_E, False),
    ("pxUsd", DEC_E, False),
    ("pxVol", DEC_E, False),
    ("pxType", STR, False),
    ("sz", DEC, False),
    ("notionalUsd", DEC_E, False),
    ("ordType", ORD_TYPE, False),
    ("side", SIDE, False),
    ("posSide", POS_SIDE, False),
    ("tdMode", TD_MODE, False),
    ("fillPx", DEC_E, False),
    ("tradeId", ID_E, False),
    ("fillSz", DEC_E, False),
    ("fillPnl", SDEC_E, False),
    ("fillTime", MS_E, False),
    ("fillFee", SDEC_E, False),
    ("fillFeeCcy", STR, False),
    ("fillPxVol", DEC_E, False),
    ("fillPxUsd", DEC_E, False),
    ("fillMarkVol", DEC_E, False),
    ("fillFwdPx", DEC_E, False),
    ("fillMarkPx", DEC_E, False),
    ("fillIdxPx", DEC_E, False),
    ("fillNotionalUsd", DEC_E, False),
    ("execType", EXEC_TYPE, False),
    ("accFillSz", DEC_E, False),
    ("avgPx", DEC_E, False),
    ("lever", DEC_E, False),
    ("attachAlgoClOrdId", STR, False),
    ("tpTriggerPx", DEC_E, False),
    ("tpOrdPx", SDEC_E, False),  # "-1": market price
    ("slTriggerPx", DEC_E, False),
    ("slOrdPx", SDEC_E, False),
    ("attachAlgoOrds", LIST, False),
    ("linkedAlgoOrd", OBJ, False),
    ("feeCcy", STR, False),
    ("fee", SDEC_E, False),  # negative: charged
    ("rebateCcy", STR, False),
    ("rebate", SDEC_E, False),
    ("pnl", SDEC_E, False),
    ("source", STR, False),
    ("category", STR, False),
    ("reduceOnly", TRUE_FALSE, False),
    ("isTpLimit", TRUE_FALSE, False),
    ("cancelSource", STR, False),
    ("amendResult", STR, False),
    ("reqId", STR, False),
    ("lastPx", DEC_E, False),
    ("code", STR, False),
    ("msg", STR, False),
)

# One currency of an account: a detail of the account channel and of REST /account/balance,
# and a balData entry of balance_and_position (ccy, cashBal, uTime).
BALANCE: Schema = (
    ("ccy", NSTR, True),
    ("cashBal", SDEC, True),
    ("uTime", MS_E, False),  # the account's uTime stands in when a detail has none
    ("eq", SDEC_E, False),
    ("availBal", SDEC_E, False),
    ("frozenBal", SDEC_E, False),
    ("ordFrozen", SDEC_E, False),
    ("availEq", SDEC_E, False),
    ("isoEq", SDEC_E, False),
    ("disEq", SDEC_E, False),
    ("fixedBal", SDEC_E, False),
    ("liab", SDEC_E, False),
    ("upl", SDEC_E, False),
    ("uplLiab", SDEC_E, False),
    ("crossLiab", SDEC_E, False),
    ("isoLiab", SDEC_E, False),
    ("rewardBal", SDEC_E, False),
    ("mgnRatio", SDEC_E, False),
    ("imr", SDEC_E, False),
    ("mmr", SDEC_E, False),
    ("interest", SDEC_E, False),
    ("twap", SDEC_E, False),
    ("maxLoan", SDEC_E, False),
    ("eqUsd", SDEC_E, False),
    ("borrowFroz", SDEC_E, False),
    ("notionalLever", SDEC_E, False),
    ("stgyEq", SDEC_E, False),
    ("isoUpl", SDEC_E, False),
    ("spotInUseAmt", SDEC_E, False),
    ("spotBal", SDEC_E, False),
    ("openAvgPx", SDEC_E, False),
    ("accAvgPx", SDEC_E, False),
    ("spotUpl", SDEC_E, False),
    ("spotUplRatio", SDEC_E, False),
    ("totalPnl", SDEC_E, False),
    ("totalPnlRatio", SDEC_E, False),
    ("collateralEnabled", BOOL, False),
    ("collateralRestrict", BOOL, False),
)

# The account-level fields around the details (account channel, REST /account/balance).
ACCOUNT: Schema = (
    ("details", LIST, True),
    ("uTime", MS_E, False),
    ("totalEq", SDEC_E, False),
    ("isoEq", SDEC_E, False),
    ("adjEq", SDEC_E, False),
    ("availEq", SDEC_E, False),
    ("ordFroz", SDEC_E, False),
    ("imr", SDEC_E, False),
    ("mmr", SDEC_E, False),
    ("borrowFroz", SDEC_E, False),
    ("mgnRatio", SDEC_E, False),
    ("notionalUsd", SDEC_E, False),
    ("upl", SDEC_E, False),
)

POSITION: Schema = (
    ("posId", ID, True),
    ("instId", NSTR, True),
    ("instType", INST_TYPE, True),
    ("pos", SDEC, True),
    ("uTime", MS, True),
    ("mgnMode", MGN_MODE, False),
    ("posSide", POS_SIDE, False),
    ("posCcy", STR, False),
    ("ccy", STR, False),
    ("availPos", SDEC_E, False),
    ("avgPx", DEC_E, False),
    ("nonSettleAvgPx", DEC_E, False),
    ("markPx", DEC_E, False),
    ("last", DEC_E, False),
    ("idxPx", DEC_E, False),
    ("liqPx", DEC_E, False),
    ("bePx", DEC_E, False),
    ("lever", DEC_E, False),
    ("upl", SDEC_E, False),
    ("uplRatio", SDEC_E, False),
    ("uplLastPx", SDEC_E, False),
    ("uplRatioLastPx", SDEC_E, False),
    ("realizedPnl", SDEC_E, False),
    ("settledPnl", SDEC_E, False),
    ("pnl", SDEC_E, False),
    ("fee", SDEC_E, False),
    ("fundingFee", SDEC_E, False),
    ("liqPenalty", SDEC_E, False),
    ("interest", SDEC_E, False),
    ("liab", SDEC_E, False),
    ("imr", SDEC_E, False),
    ("mmr", SDEC_E, False),
    ("margin", SDEC_E, False),
    ("mgnRatio", SDEC_E, False),
    ("notionalUsd", SDEC_E, False),
    ("tradeId", ID_E, False),
    ("cTime", MS_E, False),
    ("pTime", MS_E, False),
    ("closeOrderAlgo", LIST, False),
)

FILL: Schema = (
    ("instId", NSTR, True),
    ("tradeId", SID, True),  # negative for liquidation and ADL fills
    ("ordId", ID, True),
    ("billId", ID, True),
    ("fillPx", DEC, True),
    ("fillSz", DEC, True),
    ("side", SIDE, True),
    ("ts", MS, True),
    ("instType", INST_TYPE, False),
    ("clOrdId", STR, False),
    ("tag", STR, False),
    ("subType", STR, False),
    ("posSide", POS_SIDE, False),
    ("execType", EXEC_TYPE, False),
    ("feeCcy", STR, False),
    ("fee", SDEC_E, False),
    ("feeRate", SDEC_E, False),
    ("fillPnl", SDEC_E, False),
    ("fillIdxPx", DEC_E, False),
    ("fillMarkPx", DEC_E, False),
    ("fillPxVol", DEC_E, False),
    ("fillPxUsd", DEC_E, False),
    ("fillMarkVol", DEC_E, False),
    ("fillFwdPx", DEC_E, False),
    ("fillTime", MS_E, False),
)

# A candle row: [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm], by index.
CANDLE: tuple[tuple[str, Rule], ...] = (
    ("ts", MS),
    ("o", DEC),
    ("h", DEC),
    ("l", DEC),
    ("c", DEC),
    ("vol", DEC),
    ("volCcy", DEC),
    ("volCcyQuote", DEC),
    ("confirm", CONFIRM),
)
CANDLE_MIN_LEN = 7  # older payloads stop after volCcy


def check_candle(row: Any, min_len: int = CANDLE_MIN_LEN) -> str | None:
    """None if `row` is a candle array (strings, each documented index valid), else the reason."""
    if type(row) is not list or len(row) < min_len:
        return f"row array: a candle must be an array of at least {min_len} strings"
    for (name, rule), v in zip(CANDLE, row):
        reason = check(((name, rule, True),), {name: v})
        if reason is not None:
            return reason
    for v in row[len(CANDLE) :]:
        if type(v) is not str:
            return "row array: a candle's fields are strings"
    return None


# ----- the public entry ------------------------------------------------------------------------

SCHEMAS: dict[str, Schema] = {
    "trades": TRADE,
    "trades-all": TRADE,
    "history-trades": TRADE,
    "tickers": TICKER,
    "ticker": TICKER,
    "books": BOOK_INCREMENTAL,
    "books-l2-tbt": BOOK_INCREMENTAL,
    "books50-l2-tbt": BOOK_INCREMENTAL,
    "books5": BOOK_PUSHED,
    "bbo-tbt": BOOK_PUSHED,
    "rest-books": BOOK,
    "orders": ORDER,
    "orders-history": ORDER,
    "orders-history-archive": ORDER,
    "orders-pending": ORDER,
    "fills": FILL,
    "fills-history": FILL,
    "balances": BALANCE,
    "balance": ACCOUNT,  # a /account/balance row: the account with its details
    "account-detail": BALANCE,
    "balData": BALANCE,
    "account": ACCOUNT,
    "positions": POSITION,
    "posData": POSITION,
}


def validate_row(kind_or_channel: str, row: Any) -> str | None:
    """None if `row` (one data item or REST row of that kind or channel) is valid, else the
    reason. Candle channels (`candle1m`...) and "candles" take an array; books rows have their
    levels checked too; an "account" item has each detail checked as a balance."""
    if kind_or_channel.startswith("candle") or kind_or_channel in ("history-candles",):
        return check_candle(row)
    schema = SCHEMAS.get(kind_or_channel)
    if schema is None:
        raise KeyError(f"no schema for {kind_or_channel!r}")
    reason = check(schema, row)
    if reason is not None:
        return reason
    if "asks" in schema[0]:
        if schema is BOOK_INCREMENTAL and ("seqId" in row) is not ("prevSeqId" in row):
            return "seqId pairing: seqId and prevSeqId must come together"
        return check_levels(row["asks"], "asks") or check_levels(row["bids"], "bids")
    if schema is ACCOUNT:
        for detail in row["details"]:
            reason = check(BALANCE, detail)
            if reason is not None:
                return f"details {reason}"
    return None

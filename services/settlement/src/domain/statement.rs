//! Channel statements: the camt.053-shaped XML and the CSV that a channel sends for
//! reconciliation. This module *defines* both shapes (README.md documents them) and holds the
//! renderers, so that the channel simulator can produce exactly what the parser reads.
//!
//! Every parsed line keeps its 1-based line number in the document; a malformed document is
//! refused with the line and the reason, before anything is reconciled.

use chrono::{DateTime, SecondsFormat, Utc};
use payplane_core::Currency;
use quick_xml::{
    Reader, Writer,
    escape::resolve_predefined_entity,
    events::{BytesDecl, BytesStart, BytesText, Event},
};

use super::money;

/// Direction of a statement entry from the channel's account for us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `CRDT`: money the channel collected for us (a payment).
    Credit,
    /// `DBIT`: money the channel returned (a refund).
    Debit,
}

impl Direction {
    pub fn code(self) -> &'static str {
        match self {
            Direction::Credit => "CRDT",
            Direction::Debit => "DBIT",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "CRDT" => Some(Direction::Credit),
            "DBIT" => Some(Direction::Debit),
            _ => None,
        }
    }
}

/// A statement line as parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementLine {
    /// 1-based line of the document where the entry starts.
    pub line: u32,
    pub channel_reference: String,
    pub direction: Direction,
    /// Minor units, non-negative; `direction` gives the sign.
    pub amount: i64,
    pub currency: Currency,
    pub booked_at: Option<DateTime<Utc>>,
}

impl StatementLine {
    /// Credits positive, debits negative: comparable with an item's signed amount.
    pub fn signed_amount(&self) -> i64 {
        match self.direction {
            Direction::Credit => self.amount,
            Direction::Debit => -self.amount,
        }
    }
}

/// A parsed statement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Statement {
    /// The channel whose account the statement is for, with its line (XML only).
    pub account: Option<(String, u32)>,
    /// The account currency, with its line (XML only; CSV lines carry their own).
    pub currency: Option<(Currency, u32)>,
    pub lines: Vec<StatementLine>,
}

/// Why a statement was refused, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct StatementError {
    pub line: u32,
    pub reason: String,
}

fn err<T>(line: u32, reason: impl Into<String>) -> Result<T, StatementError> {
    Err(StatementError {
        line,
        reason: reason.into(),
    })
}

impl Statement {
    /// Checks that the statement is for `channel` in `currency`.
    pub fn check_for(&self, channel: &str, currency: Currency) -> Result<(), StatementError> {
        if let Some((account, line)) = &self.account
            && account != channel
        {
            return err(
                *line,
                format!("statement is for channel {account:?}, the window is for {channel:?}"),
            );
        }
        if let Some((ccy, line)) = self.currency
            && ccy != currency
        {
            return err(
                line,
                format!("statement currency is {ccy}, the window's is {currency}"),
            );
        }
        for l in &self.lines {
            if l.currency != currency {
                return err(
                    l.line,
                    format!("entry currency is {}, the window's is {currency}", l.currency),
                );
            }
        }
        Ok(())
    }
}

/// The statement's header, for rendering.
#[derive(Clone, Debug)]
pub struct StatementHeader {
    pub statement_id: String,
    pub channel_id: String,
    pub currency: Currency,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A statement entry, for rendering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementEntry {
    pub channel_reference: String,
    pub direction: Direction,
    pub amount: i64,
    pub booked_at: DateTime<Utc>,
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_ts(line: u32, s: &str) -> Result<DateTime<Utc>, StatementError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            err(
                line,
                format!("{s:?} is not an ISO 8601 date-time with offset, e.g. 2026-11-22T10:00:00Z"),
            )
        })
}

pub const CAMT053_NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08";

/// Renders a camt.053-shaped statement, entries in the given order.
pub fn render_camt053(h: &StatementHeader, entries: &[StatementEntry]) -> Vec<u8> {
    let ccy = h.currency.code();
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    let text = |w: &mut Writer<Vec<u8>>, name: &str, value: &str| -> std::io::Result<()> {
        w.create_element(name)
            .write_text_content(BytesText::new(value))
            .map(|_| ())
    };
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    let _ = w
        .create_element("Document")
        .with_attribute(("xmlns", CAMT053_NAMESPACE))
        .write_inner_content(|w| {
            w.create_element("BkToCstmrStmt").write_inner_content(|w| {
                w.create_element("GrpHdr").write_inner_content(|w| {
                    text(w, "MsgId", &h.statement_id)?;
                    text(w, "CreDtTm", &ts(&h.created_at))
                })?;
                w.create_element("Stmt").write_inner_content(|w| {
                    text(w, "Id", &h.statement_id)?;
                    text(w, "CreDtTm", &ts(&h.created_at))?;
                    w.create_element("FrToDt").write_inner_content(|w| {
                        text(w, "FrDtTm", &ts(&h.from))?;
                        text(w, "ToDtTm", &ts(&h.to))
                    })?;
                    w.create_element("Acct").write_inner_content(|w| {
                        w.create_element("Id").write_inner_content(|w| {
                            w.create_element("Othr")
                                .write_inner_content(|w| text(w, "Id", &h.channel_id))
                                .map(|_| ())
                        })?;
                        text(w, "Ccy", ccy)
                    })?;
                    w.create_element("TxsSummry").write_inner_content(|w| {
                        w.create_element("TtlNtries")
                            .write_inner_content(|w| text(w, "NbOfNtries", &entries.len().to_string()))
                            .map(|_| ())
                    })?;
                    for e in entries {
                        w.create_element("Ntry").write_inner_content(|w| {
                            w.create_element("Amt")
                                .with_attribute(("Ccy", ccy))
                                .write_text_content(BytesText::new(&money::format(h.currency, e.amount)))?;
                            text(w, "CdtDbtInd", e.direction.code())?;
                            w.create_element("Sts")
                                .write_inner_content(|w| text(w, "Cd", "BOOK"))?;
                            w.create_element("BookgDt")
                                .write_inner_content(|w| text(w, "DtTm", &ts(&e.booked_at)))?;
                            w.create_element("NtryDtls").write_inner_content(|w| {
                                w.create_element("TxDtls").write_inner_content(|w| {
                                    w.create_element("Refs")
                                        .write_inner_content(|w| text(w, "AcctSvcrRef", &e.channel_reference))
                                        .map(|_| ())
                                })?;
                                Ok(())
                            })?;
                            Ok(())
                        })?;
                    }
                    Ok(())
                })?;
                Ok(())
            })?;
            Ok(())
        });
    let mut out = w.into_inner();
    out.push(b'\n');
    out
}

/// Columns of the CSV statement, in this order, as its first line.
pub const CSV_COLUMNS: [&str; 6] = [
    "channel_id",
    "channel_reference",
    "direction",
    "amount",
    "currency",
    "booked_at",
];

/// Renders a CSV statement, entries in the given order.
pub fn render_csv(h: &StatementHeader, entries: &[StatementEntry]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(CSV_COLUMNS);
    for e in entries {
        let _ = w.write_record([
            h.channel_id.as_str(),
            e.channel_reference.as_str(),
            e.direction.code(),
            money::format(h.currency, e.amount).as_str(),
            h.currency.code(),
            ts(&e.booked_at).as_str(),
        ]);
    }
    w.into_inner().unwrap_or_default()
}

/// Parses a CSV statement (header line first, see [`CSV_COLUMNS`]).
pub fn parse_csv(doc: &[u8]) -> Result<Statement, StatementError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(doc);
    let mut statement = Statement::default();
    let mut record = csv::StringRecord::new();
    let mut first = true;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line() as u32).unwrap_or(0);
                return err(line, format!("not valid CSV: {}", csv_reason(&e)));
            }
        }
        let line = record.position().map(|p| p.line() as u32).unwrap_or(0);
        if first {
            first = false;
            let got: Vec<&str> = record.iter().collect();
            if got != CSV_COLUMNS {
                return err(
                    line,
                    format!(
                        "header must be {:?}, got {:?}",
                        CSV_COLUMNS.join(","),
                        got.join(",")
                    ),
                );
            }
            continue;
        }
        if record.len() != CSV_COLUMNS.len() {
            return err(
                line,
                format!("expected {} fields, got {}", CSV_COLUMNS.len(), record.len()),
            );
        }
        let field = |i: usize| record.get(i).unwrap_or_default();
        let channel = field(0);
        match &statement.account {
            None => statement.account = Some((channel.to_string(), line)),
            Some((c, _)) if c != channel => {
                return err(
                    line,
                    format!("channel {channel:?} differs from {c:?} on earlier lines"),
                );
            }
            Some(_) => {}
        }
        let reference = field(1);
        if reference.is_empty() {
            return err(line, "channel_reference is empty");
        }
        let direction = Direction::parse(field(2)).ok_or_else(|| StatementError {
            line,
            reason: format!("direction {:?} must be CRDT or DBIT", field(2)),
        })?;
        let currency: Currency =
            field(4)
                .parse()
                .map_err(|e: payplane_core::currency::UnknownCurrency| StatementError {
                    line,
                    reason: e.to_string(),
                })?;
        let amount = money::parse(currency, field(3)).map_err(|reason| StatementError { line, reason })?;
        let booked_at = if field(5).is_empty() {
            None
        } else {
            Some(parse_ts(line, field(5))?)
        };
        statement.lines.push(StatementLine {
            line,
            channel_reference: reference.to_string(),
            direction,
            amount,
            currency,
            booked_at,
        });
    }
    if first {
        return err(1, "empty document: expected the header line");
    }
    Ok(statement)
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "invalid UTF-8".into(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("expected {expected_len} fields, got {len}"),
        _ => e.to_string(),
    }
}

/// Counts lines incrementally as the reader moves forward (linear in the document).
struct LineCounter<'a> {
    doc: &'a [u8],
    pos: usize,
    line: u32,
}

impl LineCounter<'_> {
    fn at(&mut self, pos: u64) -> u32 {
        let pos = (pos as usize).min(self.doc.len());
        if pos >= self.pos {
            self.line += self.doc[self.pos..pos].iter().filter(|b| **b == b'\n').count() as u32;
        } else {
            self.line = 1 + self.doc[..pos].iter().filter(|b| **b == b'\n').count() as u32;
        }
        self.pos = pos;
        self.line
    }
}

#[derive(Default)]
struct PartialEntry {
    line: u32,
    amount: Option<(String, Option<String>, u32)>,
    direction: Option<(String, u32)>,
    status: Option<(String, u32)>,
    booked_at: Option<(String, u32)>,
    reference: Option<String>,
}

/// Parses a camt.053-shaped statement (see README.md for the elements read).
pub fn parse_camt053(doc: &[u8]) -> Result<Statement, StatementError> {
    let mut reader = Reader::from_reader(doc);
    reader.config_mut().trim_text(true);
    let mut lines = LineCounter { doc, pos: 0, line: 1 };
    let mut stack: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut statement = Statement::default();
    let mut entry: Option<PartialEntry> = None;
    let mut stmt_count = 0u32;
    let mut declared_entries: Option<(String, u32)> = None;
    loop {
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(e) => {
                let line = lines.at(reader.error_position());
                return err(line, format!("malformed XML: {e}"));
            }
        };
        let line = lines.at(reader.buffer_position().saturating_sub(1));
        match event {
            Event::Start(start) => {
                open(&start, &mut stack, line, &mut entry, &mut stmt_count)?;
                text.clear();
            }
            Event::Empty(start) => {
                open(&start, &mut stack, line, &mut entry, &mut stmt_count)?;
                text.clear();
                close(
                    &mut stack,
                    &text,
                    line,
                    &mut statement,
                    &mut entry,
                    &mut declared_entries,
                )?;
            }
            Event::End(_) => close(
                &mut stack,
                &text,
                line,
                &mut statement,
                &mut entry,
                &mut declared_entries,
            )?,
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::CData(t) => text.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => match r.resolve_char_ref() {
                Ok(Some(c)) => text.push(c),
                Ok(None) => match resolve_predefined_entity(&r.xml10_content()) {
                    Some(s) => text.push_str(s),
                    None => return err(line, format!("unknown entity &{};", r.xml10_content())),
                },
                Err(e) => return err(line, format!("bad character reference: {e}")),
            },
            Event::DocType(_) => return err(line, "DOCTYPE is not allowed in a statement"),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    let end_line = lines.at(doc.len() as u64);
    if stmt_count == 0 {
        return err(
            end_line,
            "no BkToCstmrStmt/Stmt element: not a camt.053 statement",
        );
    }
    if statement.account.is_none() {
        return err(end_line, "Stmt/Acct/Id/Othr/Id (the channel) is missing");
    }
    if statement.currency.is_none() {
        return err(end_line, "Stmt/Acct/Ccy is missing");
    }
    if let Some((n, line)) = declared_entries
        && n.parse::<usize>().ok() != Some(statement.lines.len())
    {
        return err(
            line,
            format!(
                "NbOfNtries says {n} but the statement has {} entries",
                statement.lines.len()
            ),
        );
    }
    Ok(statement)
}

fn open(
    start: &BytesStart<'_>,
    stack: &mut Vec<String>,
    line: u32,
    entry: &mut Option<PartialEntry>,
    stmt_count: &mut u32,
) -> Result<(), StatementError> {
    let name = start.local_name().as_ref().to_owned();
    match (stack.len(), name.as_str()) {
        (0, "Document") => {
            if let Some(ns) = attr(start, "xmlns", line)?
                && !ns.contains("camt.053")
            {
                return err(line, format!("namespace {ns:?} is not camt.053"));
            }
        }
        (0, other) => {
            return err(
                line,
                format!("root element is {other:?}, expected Document (camt.053)"),
            );
        }
        (1, "BkToCstmrStmt") => {}
        (1, other) => {
            return err(
                line,
                format!("Document contains {other:?}, expected BkToCstmrStmt (camt.053)"),
            );
        }
        (2, "Stmt") => {
            *stmt_count += 1;
            if *stmt_count > 1 {
                return err(line, "more than one Stmt: send one statement per document");
            }
        }
        _ => {}
    }
    if is(stack, &["Stmt"]) && name == "Ntry" {
        *entry = Some(PartialEntry {
            line,
            ..Default::default()
        });
    }
    if is(stack, &["Stmt", "Ntry"]) && name == "Amt" {
        let ccy = attr(start, "Ccy", line)?;
        if let Some(e) = entry.as_mut() {
            e.amount = Some((String::new(), ccy, line));
        }
    }
    stack.push(name);
    Ok(())
}

fn attr(start: &BytesStart<'_>, name: &str, line: u32) -> Result<Option<String>, StatementError> {
    for a in start.attributes() {
        let a = a.or_else(|e| err(line, format!("malformed attribute: {e}")))?;
        if a.key.as_ref() == name {
            let v = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .or_else(|e| err(line, format!("malformed attribute {name}: {e}")))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// Whether the path below `Document/BkToCstmrStmt` is exactly `rel`.
fn is(stack: &[String], rel: &[&str]) -> bool {
    stack.len() == rel.len() + 2 && stack[2..].iter().zip(rel).all(|(a, b)| a == b)
}

fn close(
    stack: &mut Vec<String>,
    text: &str,
    line: u32,
    statement: &mut Statement,
    entry: &mut Option<PartialEntry>,
    declared_entries: &mut Option<(String, u32)>,
) -> Result<(), StatementError> {
    let value = text.trim().to_string();
    if is(stack, &["Stmt", "Acct", "Id", "Othr", "Id"]) {
        statement.account = Some((value, line));
    } else if is(stack, &["Stmt", "Acct", "Ccy"]) {
        let ccy = value
            .parse()
            .or_else(|e: payplane_core::currency::UnknownCurrency| err(line, e.to_string()))?;
        statement.currency = Some((ccy, line));
    } else if is(stack, &["Stmt", "TxsSummry", "TtlNtries", "NbOfNtries"]) {
        *declared_entries = Some((value, line));
    } else if let Some(e) = entry.as_mut() {
        if is(stack, &["Stmt", "Ntry", "Amt"]) {
            if let Some(a) = e.amount.as_mut() {
                a.0 = value;
            }
        } else if is(stack, &["Stmt", "Ntry", "CdtDbtInd"]) {
            e.direction = Some((value, line));
        } else if is(stack, &["Stmt", "Ntry", "Sts", "Cd"])
            || (is(stack, &["Stmt", "Ntry", "Sts"]) && !value.is_empty())
        {
            e.status = Some((value, line));
        } else if is(stack, &["Stmt", "Ntry", "BookgDt", "DtTm"]) {
            e.booked_at = Some((value, line));
        } else if is(
            stack,
            &["Stmt", "Ntry", "NtryDtls", "TxDtls", "Refs", "AcctSvcrRef"],
        ) {
            e.reference = Some(value);
        } else if is(stack, &["Stmt", "Ntry"]) {
            let done = entry.take().unwrap_or_default();
            statement.lines.push(finish_entry(done)?);
        }
    }
    stack.pop();
    Ok(())
}

fn finish_entry(e: PartialEntry) -> Result<StatementLine, StatementError> {
    let Some((amount, ccy, amount_line)) = e.amount else {
        return err(e.line, "entry has no Amt");
    };
    let Some(ccy) = ccy else {
        return err(amount_line, "Amt has no Ccy attribute");
    };
    let currency: Currency = ccy
        .parse()
        .or_else(|e: payplane_core::currency::UnknownCurrency| err(amount_line, e.to_string()))?;
    let amount = money::parse(currency, &amount).or_else(|reason| err(amount_line, reason))?;
    let Some((direction, dir_line)) = e.direction else {
        return err(e.line, "entry has no CdtDbtInd");
    };
    let direction = Direction::parse(&direction).ok_or_else(|| StatementError {
        line: dir_line,
        reason: format!("CdtDbtInd {direction:?} must be CRDT or DBIT"),
    })?;
    if let Some((status, line)) = e.status
        && status != "BOOK"
    {
        return err(
            line,
            format!("entry status {status:?}: a statement carries booked entries (BOOK) only"),
        );
    }
    let reference = match e.reference {
        Some(r) if !r.is_empty() => r,
        _ => {
            return err(
                e.line,
                "entry has no NtryDtls/TxDtls/Refs/AcctSvcrRef (the channel reference)",
            );
        }
    };
    let booked_at = match e.booked_at {
        Some((t, line)) => Some(parse_ts(line, &t)?),
        None => None,
    };
    Ok(StatementLine {
        line: e.line,
        channel_reference: reference,
        direction,
        amount,
        currency,
        booked_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn header() -> StatementHeader {
        StatementHeader {
            statement_id: "STMT-1".into(),
            channel_id: "unionpay".into(),
            currency: "CNY".parse().unwrap(),
            from: t("2026-11-21T15:00:00Z"),
            to: t("2026-11-22T15:00:00Z"),
            created_at: t("2026-11-22T16:00:00Z"),
        }
    }

    fn entries() -> Vec<StatementEntry> {
        vec![
            StatementEntry {
                channel_reference: "R-1".into(),
                direction: Direction::Credit,
                amount: 1234,
                booked_at: t("2026-11-22T01:00:00Z"),
            },
            StatementEntry {
                channel_reference: "R<&>2".into(),
                direction: Direction::Debit,
                amount: 5,
                booked_at: t("2026-11-22T02:00:00Z"),
            },
        ]
    }

    #[test]
    fn camt053_round_trips_with_line_numbers() {
        let doc = render_camt053(&header(), &entries());
        let s = parse_camt053(&doc).unwrap();
        assert_eq!(s.account.as_ref().map(|a| a.0.as_str()), Some("unionpay"));
        assert_eq!(s.lines.len(), 2);
        assert_eq!(s.lines[1].channel_reference, "R<&>2");
        assert_eq!(s.lines[1].signed_amount(), -5);
        assert_eq!(s.lines[0].booked_at, Some(t("2026-11-22T01:00:00Z")));
        let text = String::from_utf8(doc).unwrap();
        let ntry_line = text.lines().position(|l| l.trim() == "<Ntry>").unwrap() as u32 + 1;
        assert_eq!(s.lines[0].line, ntry_line);
        assert!(s.check_for("unionpay", "CNY".parse().unwrap()).is_ok());
        let e = s.check_for("unionpay", "USD".parse().unwrap()).unwrap_err();
        let ccy_line = text.lines().position(|l| l.contains("<Ccy>")).unwrap() as u32 + 1;
        assert_eq!(e.line, ccy_line, "{e}");
        assert!(
            s.check_for("netsunion", "CNY".parse().unwrap())
                .unwrap_err()
                .reason
                .contains("netsunion")
        );
    }

    #[test]
    fn csv_round_trips_with_line_numbers() {
        let doc = render_csv(&header(), &entries());
        let s = parse_csv(&doc).unwrap();
        assert_eq!(s.lines.len(), 2);
        assert_eq!((s.lines[0].line, s.lines[1].line), (2, 3));
        assert_eq!(s.lines[1].channel_reference, "R<&>2");
        assert_eq!(s.lines[0].amount, 1234);
    }

    fn xml_error(doc: &str) -> StatementError {
        parse_camt053(doc.as_bytes()).unwrap_err()
    }

    #[test]
    fn malformed_xml_is_refused_with_line_and_reason() {
        let good = String::from_utf8(render_camt053(&header(), &entries())).unwrap();
        // Broken nesting on a known line.
        let lines: Vec<&str> = good.lines().collect();
        let amt = lines.iter().position(|l| l.contains("<Amt")).unwrap();
        let mut broken = lines.clone();
        broken[amt] = "      <Amt Ccy=\"CNY\">12.34</Amtx>";
        let e = xml_error(&broken.join("\n"));
        assert_eq!(e.line, amt as u32 + 1, "{e}");
        assert!(e.reason.contains("malformed XML"), "{e}");
        // A bad amount.
        let e = xml_error(&good.replacen(">12.34<", ">12.345<", 1));
        assert_eq!(e.line, amt as u32 + 1);
        assert!(e.reason.contains("decimal places"), "{e}");
        // Wrong direction, missing reference, wrong root, not a statement at all, pending entry.
        assert!(
            xml_error(&good.replacen("CRDT", "CRED", 1))
                .reason
                .contains("CRDT or DBIT")
        );
        assert!(
            xml_error(&good.replacen("<AcctSvcrRef>R-1</AcctSvcrRef>", "", 1))
                .reason
                .contains("AcctSvcrRef")
        );
        assert!(xml_error("<Foo/>").reason.contains("root element"));
        assert!(xml_error("not xml at all").reason.contains("no BkToCstmrStmt"));
        assert!(
            xml_error(&good.replacen("<Cd>BOOK</Cd>", "<Cd>PDNG</Cd>", 1))
                .reason
                .contains("PDNG")
        );
        assert!(
            xml_error(&good.replacen("<NbOfNtries>2<", "<NbOfNtries>3<", 1))
                .reason
                .contains("NbOfNtries")
        );
        assert!(
            xml_error(&good.replacen("camt.053.001.08", "pacs.009.001.08", 1))
                .reason
                .contains("namespace")
        );
        assert!(
            xml_error(&good.replacen("R-1", "&bogus;", 1))
                .reason
                .contains("unknown entity")
        );
        assert!(
            xml_error(&good.replacen("Ccy=\"CNY\">12.34", "Ccy=\"XXX\">12.34", 1))
                .reason
                .contains("unsupported currency")
        );
    }

    #[test]
    fn malformed_csv_is_refused_with_line_and_reason() {
        let good = String::from_utf8(render_csv(&header(), &entries())).unwrap();
        let e = parse_csv(good.replacen("CRDT", "X", 1).as_bytes()).unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse_csv(format!("{good}unionpay,R-9,CRDT,1.00\n").as_bytes()).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        let e = parse_csv(b"reference,amount\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.reason.contains("header"));
        let e = parse_csv(format!("{good}netsunion,R-9,CRDT,1.00,CNY,\n").as_bytes()).unwrap_err();
        assert_eq!(e.line, 4);
        assert!(parse_csv(b"").unwrap_err().reason.contains("empty"));
        let e = parse_csv(format!("{good}unionpay,R-9,CRDT,abc,CNY,\n").as_bytes()).unwrap_err();
        assert!(e.reason.contains("not a decimal"), "{e}");
    }
}

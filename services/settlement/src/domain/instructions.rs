//! Settlement instructions of a closed window, as ISO 20022 pacs.009-shaped XML (FI-to-FI credit
//! transfers) and as CSV. One transfer per participant with a non-zero multilateral position,
//! against the settlement hub: a participant that pays is the debtor, one that receives is the
//! creditor. Sorted by participant; every date and time is derived from the window, so the same
//! window and items always give the same bytes.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use payplane_core::Currency;
use quick_xml::{
    Writer,
    events::{BytesDecl, BytesText, Event},
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{netting::Position, postings::window_uuid};

/// The settlement hub's identifier in instructions (the platform's settlement account).
pub const HUB: &str = "payplane:settlement";

/// What an instruction document needs to know about its window.
#[derive(Clone, Debug)]
pub struct InstructionHeader<'a> {
    pub window_id: &'a str,
    pub currency: Currency,
    pub business_date: NaiveDate,
    pub cut_off_at: DateTime<Utc>,
    pub value_date: NaiveDate,
}

/// One line of an instruction document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    pub instruction_id: String,
    pub end_to_end_id: String,
    pub uetr: Uuid,
    pub debtor: String,
    pub creditor: String,
    pub amount: i64,
}

pub fn message_id(window_id: &str) -> String {
    format!("PP{}", window_uuid(window_id).simple())
}

/// The instructions for `positions` (already sorted by participant).
pub fn instructions(window_id: &str, positions: &[Position]) -> Vec<Instruction> {
    let wid = window_uuid(window_id);
    positions
        .iter()
        .filter(|p| p.net != 0)
        .enumerate()
        .map(|(i, p)| {
            let (debtor, creditor) = if p.net < 0 {
                (p.participant_id.clone(), HUB.to_string())
            } else {
                (HUB.to_string(), p.participant_id.clone())
            };
            Instruction {
                instruction_id: format!("{}-{:06}", &wid.simple().to_string()[..12], i + 1),
                end_to_end_id: window_id.to_string(),
                uetr: Uuid::new_v5(&wid, p.participant_id.as_bytes()),
                debtor,
                creditor,
                amount: p.net.abs(),
            }
        })
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// pacs.009.001.08-shaped XML.
pub fn render_pacs009(h: &InstructionHeader<'_>, instructions: &[Instruction]) -> Vec<u8> {
    let ccy = h.currency.code();
    let total: i64 = instructions.iter().map(|i| i.amount).sum();
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    // Writing into a Vec cannot fail.
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    let _ = w
        .create_element("Document")
        .with_attribute(("xmlns", "urn:iso:std:iso:20022:tech:xsd:pacs.009.001.08"))
        .write_inner_content(|w| {
            w.create_element("FICdtTrf").write_inner_content(|w| {
                w.create_element("GrpHdr").write_inner_content(|w| {
                    text(w, "MsgId", &message_id(h.window_id))?;
                    text(
                        w,
                        "CreDtTm",
                        &h.cut_off_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    )?;
                    text(w, "NbOfTxs", &instructions.len().to_string())?;
                    text(w, "CtrlSum", &h.currency.format_minor(total))?;
                    w.create_element("TtlIntrBkSttlmAmt")
                        .with_attribute(("Ccy", ccy))
                        .write_text_content(BytesText::new(&h.currency.format_minor(total)))?;
                    text(w, "IntrBkSttlmDt", &date(h.value_date))?;
                    w.create_element("SttlmInf")
                        .write_inner_content(|w| text(w, "SttlmMtd", "CLRG"))?;
                    Ok(())
                })?;
                for i in instructions {
                    w.create_element("CdtTrfTxInf").write_inner_content(|w| {
                        w.create_element("PmtId").write_inner_content(|w| {
                            text(w, "InstrId", &i.instruction_id)?;
                            text(w, "EndToEndId", &i.end_to_end_id)?;
                            text(w, "UETR", &i.uetr.to_string())?;
                            Ok(())
                        })?;
                        w.create_element("IntrBkSttlmAmt")
                            .with_attribute(("Ccy", ccy))
                            .write_text_content(BytesText::new(&h.currency.format_minor(i.amount)))?;
                        party(w, "Dbtr", &i.debtor)?;
                        party(w, "Cdtr", &i.creditor)?;
                        w.create_element("RmtInf").write_inner_content(|w| {
                            text(
                                w,
                                "Ustrd",
                                &format!(
                                    "settlement {} business date {}",
                                    h.window_id,
                                    date(h.business_date)
                                ),
                            )
                        })?;
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
            Ok(())
        });
    let mut out = w.into_inner();
    out.push(b'\n');
    out
}

fn text(w: &mut Writer<Vec<u8>>, name: &str, value: &str) -> std::io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))
        .map(|_| ())
}

fn party(w: &mut Writer<Vec<u8>>, role: &str, id: &str) -> std::io::Result<()> {
    w.create_element(role).write_inner_content(|w| {
        w.create_element("FinInstnId").write_inner_content(|w| {
            w.create_element("Othr")
                .write_inner_content(|w| text(w, "Id", id))?;
            Ok(())
        })?;
        Ok(())
    })?;
    Ok(())
}

/// The same instructions as CSV, with a header line.
pub fn render_csv(h: &InstructionHeader<'_>, instructions: &[Instruction]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let msg_id = message_id(h.window_id);
    let value_date = date(h.value_date);
    let _ = w.write_record([
        "msg_id",
        "instruction_id",
        "uetr",
        "window_id",
        "value_date",
        "debtor",
        "creditor",
        "currency",
        "amount_minor",
        "amount",
    ]);
    for i in instructions {
        let _ = w.write_record([
            msg_id.as_str(),
            i.instruction_id.as_str(),
            i.uetr.to_string().as_str(),
            h.window_id,
            value_date.as_str(),
            i.debtor.as_str(),
            i.creditor.as_str(),
            h.currency.code(),
            i.amount.to_string().as_str(),
            h.currency.format_minor(i.amount).as_str(),
        ]);
    }
    w.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions() -> Vec<Position> {
        vec![
            Position {
                participant_id: "channel:u".into(),
                receivable: 100,
                payable: 1100,
                net: -1000,
            },
            Position {
                participant_id: "fees:platform".into(),
                receivable: 10,
                payable: 0,
                net: 10,
            },
            Position {
                participant_id: "merchant:a&b".into(),
                receivable: 990,
                payable: 0,
                net: 990,
            },
            Position {
                participant_id: "merchant:z".into(),
                receivable: 5,
                payable: 5,
                net: 0,
            },
        ]
    }

    fn header() -> InstructionHeader<'static> {
        InstructionHeader {
            window_id: "u:CNY:2026-11-22",
            currency: "CNY".parse().unwrap(),
            business_date: NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
            cut_off_at: DateTime::parse_from_rfc3339("2026-11-22T15:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            value_date: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
        }
    }

    #[test]
    fn renders_pacs009_with_escaping_and_a_control_sum() {
        let ins = instructions("u:CNY:2026-11-22", &positions());
        assert_eq!(ins.len(), 3, "zero positions produce no instruction");
        assert_eq!(
            (ins[0].debtor.as_str(), ins[0].creditor.as_str(), ins[0].amount),
            ("channel:u", HUB, 1000)
        );
        let xml = String::from_utf8(render_pacs009(&header(), &ins)).unwrap();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:pacs.009.001.08\">"), "{xml}");
        assert!(xml.contains("<NbOfTxs>3</NbOfTxs>"));
        assert!(xml.contains("<CtrlSum>20.00</CtrlSum>"));
        assert!(xml.contains("<CreDtTm>2026-11-22T15:00:00Z</CreDtTm>"));
        assert!(xml.contains("<IntrBkSttlmDt>2026-11-23</IntrBkSttlmDt>"));
        assert!(xml.contains("<IntrBkSttlmAmt Ccy=\"CNY\">9.90</IntrBkSttlmAmt>"));
        assert!(xml.contains("<Id>merchant:a&amp;b</Id>"));
        assert_eq!(
            render_pacs009(&header(), &ins),
            render_pacs009(&header(), &instructions("u:CNY:2026-11-22", &positions()))
        );
    }

    #[test]
    fn renders_csv_with_a_header_and_one_row_per_instruction() {
        let ins = instructions("u:CNY:2026-11-22", &positions());
        let csv = String::from_utf8(render_csv(&header(), &ins)).unwrap();
        let lines: Vec<_> = csv.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("msg_id,instruction_id,uetr,window_id"));
        assert!(
            lines[3].ends_with(",payplane:settlement,merchant:a&b,CNY,990,9.90"),
            "{}",
            lines[3]
        );
    }
}

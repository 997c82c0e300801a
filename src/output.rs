//! How received messages and events look on stdout: `plain`, `tagged`
//! (`ORIGIN> line`, the name of the member that sent it) or `json` (one
//! object per line; peer, member and gap events appear only there).

use std::io::{self, IoSlice, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Format;
use crate::event::{Direction, Line, Lines, Output, PeerInfo};
use crate::wire::write_all_vectored;

/// A payload this long is written straight through rather than copied
/// into the output buffer first.
const LARGE: usize = 32 * 1024;

pub fn write(out: &mut impl Write, format: Format, output: &Output) -> io::Result<()> {
    match (output, format) {
        (Output::Msgs(batch), _) => write_lines(out, format, batch),
        (Output::PeerUp(info), Format::Json) => {
            peer_event(out, "peer_up", info)?;
            out.write_all(b"}\n")
        }
        (Output::PeerDown(info, ending), Format::Json) => {
            peer_event(out, "peer_down", info)?;
            out.write_all(b",\"reason\":")?;
            json_string(out, &ending.to_string())?;
            writeln!(out, ",\"polite\":{}}}", ending.is_polite())
        }
        (Output::MemberUp { id, name, addrs }, Format::Json) => {
            write!(
                out,
                "{{\"type\":\"member_up\",\"id\":\"{id:016x}\",\"name\":"
            )?;
            json_string(out, name)?;
            out.write_all(b",\"addresses\":[")?;
            for (i, addr) in addrs.iter().enumerate() {
                let comma = if i == 0 { "" } else { "," };
                write!(out, "{comma}\"{addr}\"")?;
            }
            out.write_all(b"]}\n")
        }
        (Output::MemberDown { id, name, reason }, Format::Json) => {
            write!(
                out,
                "{{\"type\":\"member_down\",\"id\":\"{id:016x}\",\"name\":"
            )?;
            json_string(out, name)?;
            out.write_all(b",\"reason\":")?;
            json_string(out, reason)?;
            out.write_all(b"}\n")
        }
        (
            Output::Gap {
                origin,
                name,
                first,
                last,
                reason,
            },
            Format::Json,
        ) => {
            write!(
                out,
                "{{\"type\":\"gap\",\"origin\":\"{origin:016x}\",\"name\":"
            )?;
            json_string(out, name)?;
            write!(
                out,
                ",\"first_seq\":{first},\"last_seq\":{last},\"reason\":"
            )?;
            json_string(out, reason)?;
            out.write_all(b"}\n")
        }
        // Only JSON output carries events; the log has them in every format.
        _ => Ok(()),
    }
}

fn write_lines(out: &mut impl Write, format: Format, batch: &Lines) -> io::Result<()> {
    let ts = timestamp(format, batch.at);
    for line in &batch.lines {
        write_line(out, format, line, &ts)?;
    }
    Ok(())
}

/// The `ts` of a batch's msg objects under `-f json` (empty otherwise).
pub fn timestamp(format: Format, at: SystemTime) -> String {
    match format {
        Format::Json => rfc3339_micros(at),
        _ => String::new(),
    }
}

/// One run of a batch's messages (see [`timestamp`] for `ts`).
pub fn write_line(out: &mut impl Write, format: Format, line: &Line, ts: &str) -> io::Result<()> {
    if format == Format::Plain {
        // The entries are the lines, each with its newline: written
        // as they came, without a copy per line (a large run goes past
        // the buffer, straight to stdout).
        return out.write_all(&line.msg.bytes[line.msg.entries.clone()]);
    }
    for (seq, hops, payload) in line.msg.msgs() {
        match format {
            Format::Plain => unreachable!("written above"),
            Format::Tagged => {
                out.write_all(line.from.as_bytes())?;
                out.write_all(b"> ")?;
            }
            Format::Json => {
                json_msg(out, line, seq, hops, ts)?;
                json_text(out, payload)?;
                out.write_all(b"}\n")?;
                continue;
            }
        }
        if payload.len() >= LARGE {
            // One writev for payload and newline, past the buffer.
            let mut slices = [IoSlice::new(payload), IoSlice::new(b"\n")];
            write_all_vectored(out, &mut slices, Duration::ZERO)?;
        } else {
            out.write_all(payload)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

/// A msg object up to its `text`.
fn json_msg(out: &mut impl Write, line: &Line, seq: u64, hops: u8, ts: &str) -> io::Result<()> {
    out.write_all(b"{\"type\":\"msg\",\"from\":")?;
    json_string(out, &line.from)?;
    write!(
        out,
        ",\"origin\":\"{:016x}\",\"ts\":\"{ts}\",\"hops\":{},\"via\":",
        line.msg.origin, hops
    )?;
    match &line.via {
        Some(via) => json_string(out, via)?,
        None => out.write_all(b"null")?,
    }
    write!(out, ",\"seq\":{seq},\"text\":")
}

fn peer_event(out: &mut impl Write, kind: &str, info: &PeerInfo) -> io::Result<()> {
    write!(out, "{{\"type\":\"{kind}\",\"name\":")?;
    json_string(out, &info.name)?;
    write!(
        out,
        ",\"id\":\"{:016x}\",\"addr\":\"{}\",\"direction\":\"{}\",\"listen_port\":{}",
        info.node_id,
        info.addr,
        match info.direction {
            Direction::In => "in",
            Direction::Out => "out",
        },
        info.listen_port
    )
}

/// A time as RFC 3339 in UTC with microseconds:
/// `2026-11-27T08:01:02.123456Z`.
pub fn rfc3339_micros(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_micros()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A payload as JSON. JSON strings hold text only, so bytes that are not
/// UTF-8 come as lossy `text` plus the exact bytes in `base64`.
fn json_text(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    match std::str::from_utf8(payload) {
        Ok(text) => json_string(out, text),
        Err(_) => {
            json_string(out, &String::from_utf8_lossy(payload))?;
            out.write_all(b",\"base64\":\"")?;
            out.write_all(base64(payload).as_bytes())?;
            out.write_all(b"\"")
        }
    }
}

/// `s` as a quoted JSON string.
pub fn json_string(out: &mut impl Write, s: &str) -> io::Result<()> {
    out.write_all(b"\"")?;
    let bytes = s.as_bytes();
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.write_all(&bytes[plain_from..i])?;
        if escaped.is_empty() {
            write!(out, "\\u{b:04x}")?;
        } else {
            out.write_all(escaped)?;
        }
        plain_from = i + 1;
    }
    out.write_all(&bytes[plain_from..])?;
    out.write_all(b"\"")
}

/// Standard base64 with padding (RFC 4648).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Ending;
    use crate::mesh::Delivery;
    use std::sync::Arc;

    /// The payloads as one delivery: a run of entries in one buffer.
    fn batch(payloads: &[&[u8]]) -> Output {
        let mut buf = Vec::new();
        for payload in payloads {
            crate::frame::put_entry(&mut buf, payload);
        }
        let len = buf.len();
        let line = Line {
            msg: Delivery {
                origin: 0xab,
                first: 1,
                last: payloads.len() as u64,
                hops: 2,
                via: Some(1),
                bytes: Arc::new(buf),
                entries: 0..len,
            },
            from: "bob".into(),
            via: Some("carol".into()),
        };
        Output::Msgs(Lines {
            at: UNIX_EPOCH + std::time::Duration::from_micros(1_795_766_462_123_456),
            lines: vec![line],
        })
    }

    fn render(format: Format, output: &Output) -> String {
        let mut out = Vec::new();
        write(&mut out, format, output).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn info() -> PeerInfo {
        PeerInfo {
            conn: 1,
            node_id: 0xab,
            name: "bob".into(),
            addr: "127.0.0.1:5000".parse().unwrap(),
            direction: Direction::In,
            listen_port: 7117,
            max_frame: 100,
            keepalive: std::time::Duration::from_secs(5),
        }
    }

    #[test]
    fn each_format_looks_as_documented() {
        let b = batch(&[b"Hello", b"", b"say \"hi\"\t\x01"]);
        assert_eq!(render(Format::Plain, &b), "Hello\n\nsay \"hi\"\t\x01\n");
        assert_eq!(
            render(Format::Tagged, &b),
            "bob> Hello\nbob> \nbob> say \"hi\"\t\x01\n"
        );
        assert_eq!(
            render(Format::Json, &b),
            "{\"type\":\"msg\",\"from\":\"bob\",\"origin\":\"00000000000000ab\",\"ts\":\"2026-11-27T08:01:02.123456Z\",\"hops\":2,\"via\":\"carol\",\"seq\":1,\"text\":\"Hello\"}\n\
             {\"type\":\"msg\",\"from\":\"bob\",\"origin\":\"00000000000000ab\",\"ts\":\"2026-11-27T08:01:02.123456Z\",\"hops\":2,\"via\":\"carol\",\"seq\":2,\"text\":\"\"}\n\
             {\"type\":\"msg\",\"from\":\"bob\",\"origin\":\"00000000000000ab\",\"ts\":\"2026-11-27T08:01:02.123456Z\",\"hops\":2,\"via\":\"carol\",\"seq\":3,\"text\":\"say \\\"hi\\\"\\t\\u0001\"}\n"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_keep_their_exact_value_in_json() {
        let out = render(Format::Json, &batch(&[b"a\xffb"]));
        assert!(
            out.contains("\"text\":\"a\u{fffd}b\",\"base64\":\"Yf9i\""),
            "{out}"
        );
    }

    #[test]
    fn peer_events_are_json_only() {
        let up = Output::PeerUp(info());
        assert_eq!(
            render(Format::Json, &up),
            "{\"type\":\"peer_up\",\"name\":\"bob\",\"id\":\"00000000000000ab\",\
             \"addr\":\"127.0.0.1:5000\",\"direction\":\"in\",\"listen_port\":7117}\n"
        );
        let down = Output::PeerDown(info(), Ending::Reset);
        assert!(render(Format::Json, &down)
            .ends_with(",\"reason\":\"connection reset by peer\",\"polite\":false}\n"));
        assert_eq!(render(Format::Plain, &up), "");
        assert_eq!(render(Format::Tagged, &down), "");
    }

    #[test]
    fn member_and_gap_events_are_json_only() {
        let up = Output::MemberUp {
            id: 0xab,
            name: "bob".into(),
            addrs: vec![
                "127.0.0.1:7117".parse().unwrap(),
                "[::1]:7118".parse().unwrap(),
            ],
        };
        assert_eq!(
            render(Format::Json, &up),
            "{\"type\":\"member_up\",\"id\":\"00000000000000ab\",\"name\":\"bob\",\
             \"addresses\":[\"127.0.0.1:7117\",\"[::1]:7118\"]}\n"
        );
        let down = Output::MemberDown {
            id: 0xab,
            name: "bob".into(),
            reason: "cut: accepted nothing for 10s".into(),
        };
        assert_eq!(
            render(Format::Json, &down),
            "{\"type\":\"member_down\",\"id\":\"00000000000000ab\",\"name\":\"bob\",\
             \"reason\":\"cut: accepted nothing for 10s\"}\n"
        );
        let gap = Output::Gap {
            origin: 0xab,
            name: "bob".into(),
            first: 5,
            last: 9,
            reason: "not repaired within 10s".into(),
        };
        assert_eq!(
            render(Format::Json, &gap),
            "{\"type\":\"gap\",\"origin\":\"00000000000000ab\",\"name\":\"bob\",\
             \"first_seq\":5,\"last_seq\":9,\"reason\":\"not repaired within 10s\"}\n"
        );
        for event in [&up, &down, &gap] {
            assert_eq!(render(Format::Plain, event), "");
            assert_eq!(render(Format::Tagged, event), "");
        }
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339_micros(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_micros(leap), "2000-02-29T00:00:00.000000Z");
        let t = UNIX_EPOCH + std::time::Duration::from_micros(4_102_444_799_999_999);
        assert_eq!(rfc3339_micros(t), "2099-12-31T23:59:59.999999Z");
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }
}

//! `listeners.tls`: the TLS listener's address, its certificates (read,
//! paired with their keys, checked against the names they are meant for
//! and their expiry) and the client-certificate CA.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_saphyr::Spanned;

use super::Checker;
use crate::config::raw::{RawClientAuth, RawTls};
use crate::tls::{
    client_auth, load_pair, name_covers, CertificateSet, ClientAuth, ServedCertificate, TlsMaterial,
};

/// A certificate this close to its end is reported as a warning.
const EXPIRY_WARNING_DAYS: i64 = 14;

const DAY: i64 = 86_400;

/// The TLS listener's address and material, or `None` (with the problems
/// reported) when something cannot be served.
pub(super) fn compile_tls(
    ck: &mut Checker,
    tls: &Spanned<RawTls>,
    proxy: SocketAddr,
    admin: SocketAddr,
) -> Option<(SocketAddr, Arc<TlsMaterial>)> {
    let raw = &tls.value;
    let listen = raw.listen.value.0;
    if listen.port() == proxy.port() {
        ck.at(
            &raw.listen,
            format!(
                "listeners.tls.listen {listen} uses port {} like listeners.proxy: give the TLS listener its own port (e.g. 8443)",
                listen.port()
            ),
        );
    } else if listen == admin {
        ck.at(
            &raw.listen,
            format!("listeners.tls.listen {listen} is the admin listener's address: give the TLS listener its own port"),
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let default = served(
        ck,
        "listeners.tls",
        Pair {
            cert: &raw.cert_file,
            key: &raw.key_file,
            names: raw.names.as_deref(),
        },
        now,
        false,
    );
    let mut extra = Vec::new();
    for (index, certificate) in raw.certificates.iter().enumerate() {
        let c = &certificate.value;
        extra.push(served(
            ck,
            &format!("listeners.tls.certificates[{index}]"),
            Pair {
                cert: &c.cert_file,
                key: &c.key_file,
                names: c.names.as_deref(),
            },
            now,
            true,
        ));
    }
    let client_auth = match &raw.client_auth {
        Some(auth) => Some(compile_client_auth(ck, &auth.value)?),
        None => None,
    };
    let extra: Option<Vec<ServedCertificate>> = extra.into_iter().collect();
    Some((
        listen,
        Arc::new(TlsMaterial {
            certificates: CertificateSet::new(default?, extra?),
            client_auth,
        }),
    ))
}

/// A certificate file, its key file and the names it is meant for.
struct Pair<'a> {
    cert: &'a Spanned<String>,
    key: &'a Spanned<String>,
    names: Option<&'a [Spanned<String>]>,
}

/// Reads and checks one certificate/key pair. `chosen_by_name`: the
/// certificate is only ever served for its names (all but the default).
fn served(
    ck: &mut Checker,
    what: &str,
    pair: Pair<'_>,
    now: i64,
    chosen_by_name: bool,
) -> Option<ServedCertificate> {
    let cert_pem = ck.read_file(pair.cert, "certificate file");
    let key_pem = ck.read_file(pair.key, "private key file");
    let (cert_pem, key_pem) = (cert_pem?, key_pem?);
    let (key, info) = match load_pair(&cert_pem, &key_pem) {
        Ok(loaded) => loaded,
        Err(e) => {
            let span = if e.in_key_file() { pair.key } else { pair.cert };
            let other = if e.in_key_file() {
                format!(" (the key for `{}`)", pair.cert.value)
            } else {
                String::new()
            };
            ck.at(span, format!("{what}: `{}`{other}: {e}", span.value));
            return None;
        }
    };
    let file = &pair.cert.value;
    if info.not_after <= now {
        ck.at(
            pair.cert,
            format!(
                "{what}: certificate `{file}` expired on {} ({} days ago): renew it; clients refuse an expired certificate",
                utc_date(info.not_after),
                (now - info.not_after) / DAY
            ),
        );
        return None;
    }
    if info.not_after - now < EXPIRY_WARNING_DAYS * DAY {
        ck.warn_at(
            pair.cert,
            format!(
                "{what}: certificate `{file}` expires on {} (in {} days): renew it and reload; portcullis_tls_certificate_expiry_seconds counts down to it",
                utc_date(info.not_after),
                (info.not_after - now) / DAY
            ),
        );
    }
    if info.not_before > now {
        ck.warn_at(
            pair.cert,
            format!(
                "{what}: certificate `{file}` is not valid before {}: clients refuse it until then",
                utc_date(info.not_before)
            ),
        );
    }
    let covered = |name: &str| info.dns_names.iter().any(|san| name_covers(san, name));
    let names = match pair.names {
        Some(listed) => {
            let mut names = Vec::with_capacity(listed.len());
            for name in listed {
                let lower = name.value.trim().trim_end_matches('.').to_ascii_lowercase();
                if lower.is_empty()
                    || lower.contains(|c: char| c.is_whitespace() || c == '/' || c == ':')
                {
                    ck.at(
                        name,
                        format!("{what}.names: `{}` is not a server name (write e.g. `api.example.com` or `*.example.com`)", name.value),
                    );
                    continue;
                }
                if !covered(&lower) {
                    let has = if info.dns_names.is_empty() {
                        "it has no DNS names".to_owned()
                    } else {
                        format!("it covers {}", info.dns_names.join(", "))
                    };
                    ck.at(
                        name,
                        format!(
                            "{what}.names: certificate `{file}` does not cover `{}` ({has}): clients asking for that name would refuse it; use a certificate issued for it or remove the name",
                            name.value
                        ),
                    );
                    continue;
                }
                names.push(lower);
            }
            names
        }
        None => {
            if chosen_by_name && info.dns_names.is_empty() {
                ck.at(
                    pair.cert,
                    format!(
                        "{what}: certificate `{file}` has no DNS names (subjectAltName) to be chosen by SNI: list them under `names` or use a certificate with DNS names"
                    ),
                );
                return None;
            }
            info.dns_names.clone()
        }
    };
    Some(ServedCertificate {
        label: file.clone(),
        key,
        names,
        not_after: info.not_after,
    })
}

fn compile_client_auth(ck: &mut Checker, raw: &RawClientAuth) -> Option<ClientAuth> {
    let pem = ck.read_file(&raw.ca_file, "client CA file")?;
    match client_auth(&pem, raw.mode.unwrap_or_default()) {
        Ok(auth) => Some(auth),
        Err(e) => {
            ck.at(
                &raw.ca_file,
                format!(
                    "listeners.tls.client_auth.ca_file `{}`: {e}",
                    raw.ca_file.value
                ),
            );
            None
        }
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix timestamp.
fn utc_date(timestamp: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = timestamp.div_euclid(DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::utc_date;

    #[test]
    fn dates_are_written_in_utc() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_767_225_599), "2025-12-31");
        assert_eq!(utc_date(-86_400), "1969-12-31");
    }
}

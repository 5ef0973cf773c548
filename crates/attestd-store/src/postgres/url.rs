//! The database URL as text: where its password is (so that nothing shows
//! it) and its `sslmode`, which this crate decides itself because
//! tokio-postgres knows neither `verify-ca` nor `verify-full`.

fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// (`userinfo` start, `@` position) of a URL, if it has a userinfo part.
fn userinfo(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    // The userinfo ends at the last `@` before the query: a password may
    // hold a raw `@` or `/` that its writer forgot to percent-encode. One
    // with a raw `?` seems to have no `@` before the query: then the last
    // `@` of all, which at worst hides more than the password.
    let end = url.find('?').unwrap_or(url.len());
    let at = url[start..end]
        .rfind('@')
        .or_else(|| url[start..].rfind('@'))?
        + start;
    Some((start, at))
}

/// The password as written in `url`, if any.
pub(crate) fn url_password(url: &str) -> Option<String> {
    if is_url(url) {
        let (start, at) = userinfo(url)?;
        let colon = url[start..at].find(':')? + start;
        Some(url[colon + 1..at].to_owned()).filter(|p| !p.is_empty())
    } else {
        key_value_password(url).map(|(a, b)| url[a..b].to_owned())
    }
}

/// Byte range of the value of `password=` in a `key=value` string.
fn key_value_password(s: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(i) = s[from..].find("password") {
        let key = from + i;
        from = key + "password".len();
        if key > 0 && !s[..key].ends_with(char::is_whitespace) {
            continue;
        }
        let rest = s[from..].trim_start();
        let Some(after_eq) = rest.strip_prefix('=') else {
            continue;
        };
        let value = after_eq.trim_start();
        let start = s.len() - value.len();
        let len = match value.strip_prefix('\'') {
            // Quoted: up to the closing quote not escaped by a backslash.
            Some(q) => {
                let mut escaped = false;
                let close = q.char_indices().find(|&(_, c)| {
                    let end = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    end
                });
                close.map_or(value.len(), |(j, _)| j + 2)
            }
            None => value.find(char::is_whitespace).unwrap_or(value.len()),
        };
        return Some((start, start + len)).filter(|(a, b)| a < b);
    }
    None
}

/// `url` with its password (if any) replaced by `***`: the form logs and
/// errors show.
pub fn redact_url(url: &str) -> String {
    let range = if is_url(url) {
        userinfo(url).and_then(|(start, at)| {
            let colon = url[start..at].find(':')? + start;
            Some((colon + 1, at))
        })
    } else {
        key_value_password(url)
    };
    match range {
        Some((a, b)) => format!("{}***{}", &url[..a], &url[b..]),
        None => url.to_owned(),
    }
}

/// `msg` with every non-empty secret replaced by `***` (tokio-postgres does
/// not put the password in its errors; this makes sure of it).
pub(crate) fn scrub(mut msg: String, secrets: &[String]) -> String {
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        msg = msg.replace(s.as_str(), "***");
    }
    msg
}

/// What a URL's `sslmode` asks for, in libpq's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslRequest {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslRequest {
    pub(crate) fn parse(s: &str) -> Option<SslRequest> {
        Some(match s {
            "disable" => SslRequest::Disable,
            "prefer" => SslRequest::Prefer,
            "require" => SslRequest::Require,
            "verify-ca" => SslRequest::VerifyCa,
            "verify-full" => SslRequest::VerifyFull,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            SslRequest::Disable => "disable",
            SslRequest::Prefer => "prefer",
            SslRequest::Require => "require",
            SslRequest::VerifyCa => "verify-ca",
            SslRequest::VerifyFull => "verify-full",
        }
    }

    /// Whether a plaintext connection would break what was asked.
    pub(crate) fn wants_tls(self) -> bool {
        matches!(
            self,
            SslRequest::Require | SslRequest::VerifyCa | SslRequest::VerifyFull
        )
    }
}

/// Takes `sslmode` out of a URL's query (or a `key=value` string) and
/// returns the rest and its value: tokio-postgres refuses `verify-ca` and
/// `verify-full`, which this module handles itself.
pub(crate) fn take_sslmode(url: &str) -> (String, Option<String>) {
    let mut mode = None;
    if is_url(url) {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), None);
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|p| match p.split_once('=') {
                Some(("sslmode", v)) => {
                    mode = Some(v.to_owned());
                    false
                }
                _ => true,
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rest, mode)
    } else {
        let kept: Vec<&str> = url
            .split_whitespace()
            .filter(|p| match p.strip_prefix("sslmode=") {
                Some(v) => {
                    mode = Some(v.to_owned());
                    false
                }
                None => true,
            })
            .collect();
        // Only rebuilt when sslmode was there: re-joining would break a
        // quoted value holding spaces.
        if mode.is_some() {
            (kept.join(" "), mode)
        } else {
            (url.to_owned(), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        for (url, shown) in [
            (
                "postgres://postgres:s3cret@127.0.0.1:1/x",
                "postgres://postgres:***@127.0.0.1:1/x",
            ),
            (
                "postgresql://u:s3cret@db.example/x?sslmode=require",
                "postgresql://u:***@db.example/x?sslmode=require",
            ),
            // A raw `@` and `/` in the password are hidden whole.
            ("postgres://u:s3@c/ret@h/x", "postgres://u:***@h/x"),
            ("postgres://u:s3?cret@h/x", "postgres://u:***@h/x"),
            ("postgres://u@h/x", "postgres://u@h/x"),
            ("postgres://h/x", "postgres://h/x"),
            (
                "host=h user=u password=s3cret dbname=x",
                "host=h user=u password=*** dbname=x",
            ),
            (
                "host=h password = 's3 c\\'ret' dbname=x",
                "host=h password = *** dbname=x",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn sslmode_is_taken_out_of_the_url() {
        for name in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            assert_eq!(SslRequest::parse(name).map(SslRequest::name), Some(name));
        }
        assert_eq!(SslRequest::parse("verify_full"), None);
        assert_eq!(
            take_sslmode("postgres://h/x?sslmode=verify-full&application_name=a"),
            (
                "postgres://h/x?application_name=a".to_owned(),
                Some("verify-full".to_owned())
            )
        );
        assert_eq!(
            take_sslmode("postgres://h/x?sslmode=require"),
            ("postgres://h/x".to_owned(), Some("require".to_owned()))
        );
        assert_eq!(
            take_sslmode("host=h sslmode=verify-ca dbname=x"),
            ("host=h dbname=x".to_owned(), Some("verify-ca".to_owned()))
        );
        assert_eq!(
            take_sslmode("postgres://h/x"),
            ("postgres://h/x".to_owned(), None)
        );
    }
}

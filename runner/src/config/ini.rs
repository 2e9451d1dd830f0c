//! INI as Pushpin's `pushpin.conf` uses it (Qt's QSettings): `[section]`
//! headers, `key=value` lines, `#` and `;` comments, optional double quotes
//! around a value. Keys before any section belong to `general`.

use std::collections::BTreeMap;

/// Why a config file could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IniError {
    /// A `[` without its `]`, or an empty section name.
    #[error("line {line}: bad section header {text:?}")]
    BadSection {
        /// Line number, from 1.
        line: usize,
        /// The line.
        text: String,
    },
    /// A line that is neither a section, a comment nor `key=value`.
    #[error("line {line}: expected key=value, found {text:?}")]
    NotKeyValue {
        /// Line number, from 1.
        line: usize,
        /// The line.
        text: String,
    },
    /// A value opened with `"` and never closed.
    #[error("line {line}: unterminated quote")]
    UnterminatedQuote {
        /// Line number, from 1.
        line: usize,
    },
}

/// One value and where it was set.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The value, unquoted.
    pub value: String,
    /// Line number, from 1.
    pub line: usize,
}

/// Section → key → entry; a key set twice keeps the last value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ini {
    /// The sections.
    pub sections: BTreeMap<String, BTreeMap<String, Entry>>,
}

impl Ini {
    /// The value of `section.key`.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections
            .get(section)?
            .get(key)
            .map(|e| e.value.as_str())
    }
}

/// Parses INI text.
pub fn parse(text: &str) -> Result<Ini, IniError> {
    let mut ini = Ini::default();
    let mut section = "general".to_owned();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .map(str::trim)
                .filter(|n| !n.is_empty());
            let Some(name) = name else {
                return Err(IniError::BadSection {
                    line,
                    text: raw.to_owned(),
                });
            };
            section = name.to_ascii_lowercase();
            ini.sections.entry(section.clone()).or_default();
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            return Err(IniError::NotKeyValue {
                line,
                text: raw.to_owned(),
            });
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(IniError::NotKeyValue {
                line,
                text: raw.to_owned(),
            });
        }
        let value = unquote(value.trim(), line)?;
        ini.sections
            .entry(section.clone())
            .or_default()
            .insert(key.to_owned(), Entry { value, line });
    }
    Ok(ini)
}

fn unquote(value: &str, line: usize) -> Result<String, IniError> {
    let Some(rest) = value.strip_prefix('"') else {
        return Ok(value.to_owned());
    };
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Ok(out),
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => break,
            },
            other => out.push(other),
        }
    }
    Err(IniError::UnterminatedQuote { line })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keys_comments_quotes() {
        let ini = parse("top=1\n# c\n; c\n[Global]\nrundir = run \n[proxy]\nsig_key=\"a \\\"b\\\" c\"\nx=\nx=2\n").unwrap();
        assert_eq!(ini.get("general", "top"), Some("1"));
        assert_eq!(ini.get("global", "rundir"), Some("run"));
        assert_eq!(ini.get("proxy", "sig_key"), Some("a \"b\" c"));
        assert_eq!(ini.get("proxy", "x"), Some("2"));
        assert_eq!(ini.sections["proxy"]["x"].line, 9);
    }

    #[test]
    fn malformed() {
        assert_eq!(
            parse("[global\n"),
            Err(IniError::BadSection {
                line: 1,
                text: "[global".into()
            })
        );
        assert_eq!(
            parse("[ ]\n"),
            Err(IniError::BadSection {
                line: 1,
                text: "[ ]".into()
            })
        );
        assert_eq!(
            parse("[a]\njunk\n"),
            Err(IniError::NotKeyValue {
                line: 2,
                text: "junk".into()
            })
        );
        assert_eq!(
            parse("=1\n"),
            Err(IniError::NotKeyValue {
                line: 1,
                text: "=1".into()
            })
        );
        assert_eq!(
            parse("k=\"open\n"),
            Err(IniError::UnterminatedQuote { line: 1 })
        );
    }
}

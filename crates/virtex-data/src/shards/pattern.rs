//! Brace patterns naming shard files, as WebDataset (`braceexpand`) reads
//! them: `train-{000000..000099}.tar` (numeric ranges keep the first bound's
//! zero padding), `{train,extra}-{0..9}.tar` (lists), several groups.

use std::path::PathBuf;

use super::ShardError;

/// The files `pattern` names, in order; every one must exist.
pub fn expand_shard_pattern(pattern: &str) -> Result<Vec<PathBuf>, ShardError> {
    let names = expand(pattern).map_err(|message| ShardError::Pattern {
        pattern: pattern.into(),
        message,
    })?;
    let paths: Vec<PathBuf> = names.into_iter().map(PathBuf::from).collect();
    if let Some(missing) = paths.iter().find(|path| !path.is_file()) {
        return Err(ShardError::Missing {
            pattern: pattern.into(),
            count: paths.len(),
            missing: missing.clone(),
        });
    }
    Ok(paths)
}

/// The strings a brace pattern expands to.
fn expand(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') {
            return Err("'}' without '{'".into());
        }
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find('}')
        .map(|i| open + i)
        .ok_or("'{' without '}'")?;
    let (head, group, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    if group.contains('{') {
        return Err("nested braces are not supported".into());
    }
    let choices = match group.split_once("..") {
        Some((first, last)) => range(first, last)?,
        None => group.split(',').map(str::to_string).collect(),
    };
    let tails = expand(tail)?;
    Ok(choices
        .iter()
        .flat_map(|choice| tails.iter().map(move |t| format!("{head}{choice}{t}")))
        .collect())
}

/// `first..last` inclusive, zero-padded to `first`'s width.
fn range(first: &str, last: &str) -> Result<Vec<String>, String> {
    let parse = |bound: &str| {
        bound
            .parse::<u64>()
            .map_err(|_| format!("'{bound}' is not a number in '{{{first}..{last}}}'"))
    };
    let (low, high) = (parse(first)?, parse(last)?);
    if low > high {
        return Err(format!("the range {{{first}..{last}}} is empty"));
    }
    let width = first.len();
    Ok((low..=high).map(|n| format!("{n:0width$}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_keep_their_padding_and_groups_multiply() {
        assert_eq!(
            expand("s-{000008..000011}.tar").unwrap(),
            [
                "s-000008.tar",
                "s-000009.tar",
                "s-000010.tar",
                "s-000011.tar"
            ]
        );
        assert_eq!(
            expand("{a,b}-{0..1}.tar").unwrap(),
            ["a-0.tar", "a-1.tar", "b-0.tar", "b-1.tar"]
        );
        assert_eq!(expand("plain.tar").unwrap(), ["plain.tar"]);
    }

    #[test]
    fn malformed_patterns_say_what_is_wrong() {
        for (pattern, words) in [
            ("s-{0..x}.tar", "'x' is not a number"),
            ("s-{9..1}.tar", "is empty"),
            ("s-{0..1.tar", "without '}'"),
            ("s-0..1}.tar", "without '{'"),
        ] {
            let err = expand(pattern).unwrap_err();
            assert!(err.contains(words), "{pattern}: {err}");
        }
    }

    #[test]
    fn missing_shards_are_named() {
        let err = expand_shard_pattern("/nonexistent/s-{0..2}.tar").unwrap_err();
        assert!(
            err.to_string().contains("names 3 files")
                && err.to_string().contains("/nonexistent/s-0.tar"),
            "{err}"
        );
    }
}

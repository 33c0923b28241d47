//! A contact sheet a person can open: validation images beside the caption
//! the model gave each (marked right or wrong where the caller judges it)
//! and its reference captions, under a header of figures, as one
//! self-contained HTML file (images embedded), written atomically.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// One image of the sheet.
#[derive(Clone, Debug, PartialEq)]
pub struct SheetEntry {
    /// The image file (JPEG or PNG), embedded as it is.
    pub image: PathBuf,
    /// The model's caption.
    pub caption: String,
    /// The dataset's captions of the image.
    pub references: Vec<String>,
    /// Whether the caption is right by the sheet's measure (the header
    /// says which), shown as ✓ or ✗; `None`: unmarked.
    pub mark: Option<bool>,
}

/// The sheet's HTML: a heading, the `header` figures (name, value) as a
/// table, then one row per entry.
pub fn contact_sheet_html(
    title: &str,
    header: &[(String, String)],
    entries: &[SheetEntry],
) -> std::io::Result<String> {
    let mut html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{0}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.5em 1em;vertical-align:top}}\
         th{{text-align:left}}img{{width:128px;height:128px;image-rendering:pixelated;border:1px solid #ccc}}\
         .caption{{font-weight:bold}}.refs{{color:#555}}.right{{color:#070}}.wrong{{color:#b00}}\
         </style></head><body>\n<h1>{0}</h1>\n",
        escape(title)
    );
    if !header.is_empty() {
        html.push_str("<table class=\"header\">\n");
        for (name, value) in header {
            let _ = writeln!(
                html,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(name),
                escape(value)
            );
        }
        html.push_str("</table>\n");
    }
    html.push_str("<table>\n");
    for entry in entries {
        let bytes = std::fs::read(&entry.image).map_err(|e| {
            std::io::Error::new(e.kind(), format!("{}: {e}", entry.image.display()))
        })?;
        let mime = match entry.image.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("png") => "image/png",
            _ => "image/jpeg",
        };
        let references: String = entry
            .references
            .iter()
            .map(|r| format!("<li>{}</li>", escape(r)))
            .collect();
        let mark = match entry.mark {
            Some(true) => "<span class=\"mark right\">✓</span> ",
            Some(false) => "<span class=\"mark wrong\">✗</span> ",
            None => "",
        };
        let _ = writeln!(
            html,
            "<tr><td><img src=\"data:{mime};base64,{}\" alt=\"{}\"></td>\
             <td><div class=\"caption\">{mark}{}</div><ul class=\"refs\">{references}</ul></td></tr>",
            STANDARD.encode(bytes),
            escape(
                &entry
                    .image
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
            ),
            escape(&entry.caption),
        );
    }
    html.push_str("</table>\n</body></html>\n");
    Ok(html)
}

/// Writes [`contact_sheet_html`] to `path` atomically.
pub fn write_contact_sheet(
    path: &Path,
    title: &str,
    header: &[(String, String)],
    entries: &[SheetEntry],
) -> std::io::Result<()> {
    let html = contact_sheet_html(title, header, entries)?;
    virtex_data::atomic::write_bytes(path, html.as_bytes())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sheet_embeds_each_image_with_its_captions() {
        let image =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fixtures/images/rgb.jpg");
        let entry = |caption: &str, mark| SheetEntry {
            image: image.clone(),
            caption: caption.into(),
            references: vec!["grinning face".into(), "face & hands".into()],
            mark,
        };
        let entries = [
            entry("a <red> face", None),
            entry("a face", Some(true)),
            entry("a hand", Some(false)),
        ];
        let header = [("CIDEr-D".to_string(), "70.1 <ok>".to_string())];
        let html = contact_sheet_html("run \"x\"", &header, &entries).unwrap();
        let encoded = STANDARD.encode(std::fs::read(&image).unwrap());
        assert_eq!(
            html.matches(&format!("data:image/jpeg;base64,{encoded}"))
                .count(),
            3
        );
        assert!(html.contains("<div class=\"caption\">a &lt;red&gt; face</div>"));
        assert!(html.contains("<span class=\"mark right\">✓</span> a face"));
        assert!(html.contains("<span class=\"mark wrong\">✗</span> a hand"));
        assert!(html.contains("<tr><th>CIDEr-D</th><td>70.1 &lt;ok&gt;</td></tr>"));
        assert!(html.contains("<li>face &amp; hands</li>"));
        assert!(html.contains("<title>run &quot;x&quot;</title>"));
        // No figures, no header table.
        let bare = contact_sheet_html("t", &[], &entries[..1]).unwrap();
        assert!(!bare.contains("class=\"header\""));
        let missing = SheetEntry {
            image: image.with_file_name("absent.jpg"),
            caption: String::new(),
            references: vec![],
            mark: None,
        };
        let err = contact_sheet_html("t", &[], &[missing]).unwrap_err();
        assert!(err.to_string().contains("absent.jpg"), "{err}");
    }
}

//! Metrics as JSON lines (`metrics.jsonl`, one object per iteration and per
//! validation) and PNG plots of the loss and learning-rate curves.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::ImageEncoder;
use plotters::prelude::*;
use serde_json::Value;

/// A metrics file that cannot be read or written, or a plot that cannot be drawn.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Filesystem failure.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line of an existing `metrics.jsonl` that is not JSON.
    #[error("{path}:{line}: not JSON: {source}")]
    NotJson {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// The parse error.
        source: serde_json::Error,
    },
    /// Drawing or encoding a plot failed.
    #[error("plotting {path}: {message}")]
    Plot {
        /// The PNG being drawn.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> MetricsError + '_ {
    move |source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An append-only metrics file.
pub struct MetricsLog {
    path: PathBuf,
    writer: BufWriter<File>,
    records: Vec<Value>,
}

impl MetricsLog {
    /// Opens `path`, keeping the records of iterations up to `keep_until`
    /// (the resumed checkpoint's; 0 starts afresh) and dropping later ones,
    /// which the resumed run will write again.
    pub fn open(path: &Path, keep_until: u64) -> Result<Self, MetricsError> {
        let mut records = Vec::new();
        if keep_until > 0 && path.exists() {
            records = read_records(path)?;
            records.retain(|record| {
                record["iteration"]
                    .as_u64()
                    .is_some_and(|i| i <= keep_until)
            });
        }
        let mut text = String::new();
        for record in &records {
            text.push_str(&record.to_string());
            text.push('\n');
        }
        virtex_data::atomic::write_bytes(path, text.as_bytes()).map_err(io_error(path))?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_error(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: BufWriter::new(file),
            records,
        })
    }

    /// Appends one record (flushed, so a killed run keeps it).
    pub fn write(&mut self, record: &Value) -> Result<(), MetricsError> {
        writeln!(self.writer, "{record}")
            .and_then(|()| self.writer.flush())
            .map_err(io_error(&self.path))?;
        self.records.push(record.clone());
        Ok(())
    }

    /// Series `key` over the records that have it, as (iteration, value).
    fn series(&self, key: &str) -> Vec<(f64, f64)> {
        self.records
            .iter()
            .filter_map(|r| Some((r["iteration"].as_f64()?, r[key].as_f64()?)))
            .collect()
    }

    /// Writes `loss.png` (training and validation loss) and `lr.png` (both
    /// learning rates) into `dir`. Without a TrueType font on the machine
    /// the plots are skipped with a note; the numbers stay in the JSONL.
    pub fn plot(&self, dir: &Path) -> Result<(), MetricsError> {
        if !font_registered() {
            eprintln!(
                "no TrueType font found (set VIRTEX_PLOT_FONT to a .ttf file); plots skipped, see {}",
                self.path.display()
            );
            return Ok(());
        }
        line_chart(
            &dir.join("loss.png"),
            "loss",
            &[
                ("train", self.series("loss")),
                ("validation", self.series("val_loss")),
            ],
        )?;
        line_chart(
            &dir.join("lr.png"),
            "learning rate",
            &[("LR", self.series("lr")), ("CNN_LR", self.series("cnn_lr"))],
        )
    }
}

/// The records of a `metrics.jsonl`, in order: a training step's has
/// `iteration` and `loss`, a validation's `iteration` and `val_loss`.
pub fn read_records(path: &Path) -> Result<Vec<Value>, MetricsError> {
    let file = File::open(path).map_err(io_error(path))?;
    BufReader::new(file)
        .lines()
        .enumerate()
        .map(|(number, line)| {
            let line = line.map_err(io_error(path))?;
            serde_json::from_str(&line).map_err(|source| MetricsError::NotJson {
                path: path.to_path_buf(),
                line: number + 1,
                source,
            })
        })
        .collect()
}

/// Registers a sans-serif font from `VIRTEX_PLOT_FONT` or the usual system
/// places, once.
fn font_registered() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        let candidates = std::env::var_os("VIRTEX_PLOT_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(
                [
                    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                    "/usr/share/fonts/TTF/DejaVuSans.ttf",
                    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
                    "/System/Library/Fonts/Supplemental/Arial.ttf",
                    "C:\\Windows\\Fonts\\arial.ttf",
                ]
                .map(PathBuf::from),
            );
        for path in candidates {
            if let Ok(bytes) = std::fs::read(&path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

fn line_chart(
    path: &Path,
    title: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<(), MetricsError> {
    let png = draw_chart(title, series).map_err(|message| MetricsError::Plot {
        path: path.to_path_buf(),
        message,
    })?;
    match png {
        Some(png) => virtex_data::atomic::write_bytes(path, &png).map_err(io_error(path)),
        None => Ok(()),
    }
}

/// A line chart of `series` as PNG bytes, `None` without a finite point;
/// `Err` holds what plotters or the encoder reported.
fn draw_chart(title: &str, series: &[(&str, Vec<(f64, f64)>)]) -> Result<Option<Vec<u8>>, String> {
    let points = series.iter().flat_map(|(_, s)| s.iter());
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points {
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if !y_min.is_finite() {
        return Ok(None);
    }
    let pad = ((y_max - y_min) * 0.05).max(1e-9);
    let (width, height) = (800u32, 500u32);
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, (y_min - pad)..(y_max + pad))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("iteration")
            .y_desc(title)
            .draw()
            .map_err(|e| e.to_string())?;
        for (index, (name, points)) in series.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    // Encoded with the workspace's `image` (plotters' own encoder would pull a
    // second version of it), then written atomically.
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&pixels, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| e.to_string())?;
    Ok(Some(png))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_resumed_log_keeps_earlier_records_and_plots_them() {
        let dir = std::env::temp_dir().join(format!("virtex-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, 0).unwrap();
        for i in 1..=4u64 {
            let record = json!({"iteration": i, "loss": 10.0 / i as f64, "lr": 0.1, "cnn_lr": 0.2});
            log.write(&record).unwrap();
        }
        log.write(&json!({"iteration": 4, "val_loss": 3.0}))
            .unwrap();
        drop(log);
        let records = read_records(&path).unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(records[4]["val_loss"], 3.0);
        let log = MetricsLog::open(&path, 2).unwrap();
        assert_eq!(log.series("loss"), [(1.0, 10.0), (2.0, 5.0)]);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        log.plot(&dir).unwrap();
        if font_registered() {
            for name in ["loss.png", "lr.png"] {
                let image = image::open(dir.join(name)).unwrap();
                assert_eq!((image.width(), image.height()), (800, 500), "{name}");
            }
        } else {
            assert!(!dir.join("loss.png").exists());
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! Look and layout shared by all charts: palette, fonts, the frame (title, caption and a
//! legend panel beside the plot, so a legend never covers data), one drawing routine
//! rendered to both PNG and SVG, and a [`Plot`] whose helpers clip in data space
//! (see [`super::geom`]).

use super::geom::clip_polyline;
use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};

pub const SIZE: (u32, u32) = (1200, 700);
/// DejaVu Sans, carried by the binary (registered by [`fonts`]).
pub const FONT: &str = "sans-serif";

/// Registers the embedded DejaVu Sans (regular and bold) as [`FONT`], once per process.
pub fn fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (style, bytes) in [(FontStyle::Normal, dejavu::sans::regular()), (FontStyle::Bold, dejavu::sans::bold())] {
            // the bytes are a valid TrueType font (the dejavu crate's own file)
            let _ = plotters::style::register_font(FONT, style, bytes);
        }
    });
}
pub const INK: RGBColor = RGBColor(40, 40, 40);
pub const MUTED: RGBColor = RGBColor(110, 110, 110);

/// Tableau 10: distinguishable, colour-blind tolerant, prints well.
const PALETTE: [RGBColor; 10] = [
    RGBColor(78, 121, 167),
    RGBColor(242, 142, 43),
    RGBColor(225, 87, 89),
    RGBColor(118, 183, 178),
    RGBColor(89, 161, 79),
    RGBColor(237, 201, 72),
    RGBColor(176, 122, 161),
    RGBColor(255, 157, 167),
    RGBColor(156, 117, 95),
    RGBColor(186, 176, 172),
];

pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Plotters' errors borrow the backend's error type (not 'static): turn them into text.
pub trait Px<T> {
    fn px(self) -> Result<T>;
}
impl<T, E: std::fmt::Display> Px<T> for std::result::Result<T, E> {
    fn px(self) -> Result<T> {
        self.map_err(|e| anyhow!("plotting: {e}"))
    }
}

/// A chart is drawn once, generically, then rendered by [`save`] to every backend.
pub trait Chart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Renders `chart` to `<out_dir>/<name>.png` and `.svg`; returns both paths.
pub fn save(out_dir: &Path, name: &str, chart: &impl Chart) -> Result<Vec<PathBuf>> {
    let (png, svg) = (out_dir.join(format!("{name}.png")), out_dir.join(format!("{name}.svg")));
    let ctx = |p: &Path, e: anyhow::Error| anyhow!("{}: {e}", p.display());
    crate::faults::io("chart").map_err(|e| ctx(&png, e.into()))?;
    fonts();
    render(BitMapBackend::new(&png, SIZE).into_drawing_area(), chart).map_err(|e| ctx(&png, e))?;
    render(SVGBackend::new(&svg, SIZE).into_drawing_area(), chart).map_err(|e| ctx(&svg, e))?;
    Ok(vec![png, svg])
}

/// White background, the chart, then the file written (by `present`).
fn render<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, chart: &impl Chart) -> Result<()> {
    root.fill(&WHITE).px().and_then(|_| chart.draw(&root)).and_then(|_| root.present().px())
}

/// How a legend entry's sample is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Swatch {
    Line,
    Faint,
    Band,
    Dot,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub label: String,
    pub color: RGBColor,
    pub swatch: Swatch,
}

impl Entry {
    pub fn new(label: impl Into<String>, color: RGBColor, swatch: Swatch) -> Self {
        Self { label: label.into(), color, swatch }
    }
}

/// Title, caption lines under it, and a legend panel (entries, then grey notes) on the right.
/// The [`Frame`] of a chart struct with `title`, `caption`, `legend` and `notes` fields.
macro_rules! frame_of {
    ($c:expr) => {
        $crate::plot::style::Frame { title: &$c.title, caption: &$c.caption, legend: &$c.legend, notes: &$c.notes }
    };
}
pub(crate) use frame_of;

pub struct Frame<'a> {
    pub title: &'a str,
    pub caption: &'a [String],
    pub legend: &'a [Entry],
    pub notes: &'a [String],
}

fn text_w<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, s: &str, size: f64) -> u32 {
    root.estimate_text_size(s, &TextStyle::from((FONT, size).into_font())).map_or(s.len() as u32 * 9, |d| d.0)
}

impl Frame<'_> {
    /// Draws the frame and returns the area left for the plot.
    pub fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<DrawingArea<DB, Shift>> {
        let (w, _) = root.dim_in_pixel();
        let top = 58 + 22 * self.caption.len() as u32;
        let title = TextStyle::from((FONT, 26).into_font().style(FontStyle::Bold)).color(&INK);
        root.draw(&Text::new(self.title.to_string(), (24, 16), title)).px()?;
        for (i, c) in self.caption.iter().enumerate() {
            let st = TextStyle::from((FONT, 16).into_font()).color(&MUTED);
            root.draw(&Text::new(c.clone(), (24, 54 + 22 * i as i32), st)).px()?;
        }
        let widest = self.legend.iter().map(|e| text_w(root, &e.label, 16.0) + 48).max().unwrap_or(0);
        let lw = widest.clamp(190, 420).max(if self.notes.is_empty() { 0 } else { 230 });
        let (_, body) = root.split_vertically(top);
        let (plot, panel) = body.split_horizontally(w - lw - 10);
        self.draw_legend(&panel, lw)?;
        Ok(plot)
    }

    fn draw_legend<DB: DrawingBackend>(&self, panel: &DrawingArea<DB, Shift>, lw: u32) -> Result<()> {
        let mut y = 24;
        let label = TextStyle::from((FONT, 16).into_font()).color(&INK).pos(Pos::new(HPos::Left, VPos::Center));
        for e in self.legend {
            let c = e.color;
            match e.swatch {
                Swatch::Line => panel.draw(&PathElement::new(vec![(6, y), (36, y)], c.stroke_width(3))),
                Swatch::Faint => panel.draw(&PathElement::new(vec![(6, y), (36, y)], c.mix(0.35).stroke_width(1))),
                Swatch::Band => panel.draw(&Rectangle::new([(6, y - 7), (36, y + 7)], c.mix(0.25).filled())),
                Swatch::Dot => panel.draw(&Circle::new((21, y), 5, c.filled())),
            }
            .px()?;
            // a label wider than the panel (several --by keys) continues on the next lines
            let lines = fit(panel, &e.label, lw.saturating_sub(52));
            for (i, line) in lines.iter().enumerate() {
                panel.draw(&Text::new(line.clone(), (44, y + 19 * i as i32), label.clone())).px()?;
            }
            y += 26 + 19 * (lines.len() as i32 - 1);
        }
        let note = TextStyle::from((FONT, 14).into_font()).color(&MUTED);
        let chars = ((lw as usize).saturating_sub(16) / 8).max(16);
        y += 8;
        for n in self.notes {
            for line in wrap(n, chars) {
                panel.draw(&Text::new(line, (6, y), note.clone())).px()?;
                y += 19;
            }
            y += 6;
        }
        Ok(())
    }
}

/// Greedy word wrap of a 16-px label to lines at most `px` pixels wide (a longer word keeps its line).
fn fit<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, s: &str, px: u32) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in s.split_whitespace() {
        let cur = lines.last_mut().unwrap();
        let joined = if cur.is_empty() { word.to_string() } else { format!("{cur} {word}") };
        if cur.is_empty() || text_w(area, &joined, 16.0) <= px {
            *cur = joined;
        } else {
            lines.push(word.to_string());
        }
    }
    lines
}

/// Greedy word wrap to at most `width` characters per line.
pub fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in s.split_whitespace() {
        let cur = lines.last_mut().unwrap();
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        }
    }
    lines
}

/// Tick text with as many decimals as the axis span needs.
pub fn tick(v: f64, span: f64) -> String {
    let d = (1.0 - span.abs().max(1e-12).log10().floor()).clamp(0.0, 6.0) as usize;
    let s = format!("{v:.d$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// Padded range covering `vals` (finite ones), never empty.
pub fn range_of(vals: impl IntoIterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = vals.into_iter().filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(1e-3 * lo.abs().max(1e-3));
    (lo - pad * span, hi + pad * span)
}

/// A 2-D f64 chart inside a frame, with clipped drawing helpers.
/// How the x axis is labelled: plain numbers, whole numbers only, or x = log2(v) labelled v.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum XAxis {
    Num,
    Int,
    Log2,
}

pub struct Plot<'a, DB: DrawingBackend> {
    pub ctx: ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    pub xr: (f64, f64),
    pub yr: (f64, f64),
}

impl<'a, DB: DrawingBackend> Plot<'a, DB> {
    /// Axes with tick labels sized to the span. `y_desc: None` makes the y axis
    /// categorical (rows drawn by the caller: no y ticks or grid); `y_label_w` is the
    /// width left of the plot for y labels; `x_int` keeps only whole-number x ticks.
    pub fn new(area: &'a DrawingArea<DB, Shift>, xr: (f64, f64), yr: (f64, f64), x_desc: &str, y_desc: Option<&str>, y_label_w: u32, x_axis: XAxis) -> Result<Self> {
        let mut ctx = ChartBuilder::on(area).margin_top(8).margin_right(16).margin_left(14).x_label_area_size(62).y_label_area_size(y_label_w).build_cartesian_2d(xr.0..xr.1, yr.0..yr.1).px()?;
        let (xs, ys) = (xr.1 - xr.0, yr.1 - yr.0);
        let xf = move |v: &f64| match x_axis {
            XAxis::Int | XAxis::Log2 if (v - v.round()).abs() > 1e-9 => String::new(),
            XAxis::Int => format!("{}", v.round()),
            XAxis::Log2 => format!("{}", 2f64.powf(v.round())),
            XAxis::Num => tick(*v, xs),
        };
        let yf = move |v: &f64| tick(*v, ys);
        // about one label per 90 pixels, so narrow panels do not run their labels together
        let room = (area.dim_in_pixel().0 as usize / 90).clamp(3, 10);
        let n_x = if x_axis != XAxis::Num { (xs.ceil() as usize + 1).min(20) } else { room };
        let mut mesh = ctx.configure_mesh();
        mesh.x_desc(x_desc)
            .axis_desc_style((FONT, 18))
            .label_style((FONT, 15))
            .bold_line_style(BLACK.mix(0.09))
            .light_line_style(BLACK.mix(0.035))
            .max_light_lines(1)
            .axis_style(INK.mix(0.6))
            .x_labels(n_x)
            .x_label_formatter(&xf)
            .y_label_formatter(&yf);
        match y_desc {
            Some(d) => mesh.y_desc(d).y_labels(8),
            None => mesh.y_labels(0).disable_y_mesh(),
        };
        mesh.draw().px()?;
        Ok(Self { ctx, xr, yr })
    }

    /// A polyline, clipped to the plot; non-finite points break it.
    pub fn line(&mut self, pts: &[(f64, f64)], style: ShapeStyle) -> Result<()> {
        for seg in clip_polyline(pts, self.xr, self.yr) {
            self.ctx.draw_series(std::iter::once(PathElement::new(seg, style))).px()?;
        }
        Ok(())
    }

    /// Shaded band between `lo` and `hi` over `x`. Stretches wholly outside the y range
    /// are dropped (a clamped band would collapse into a line along the edge); the rest is
    /// clamped to the range, which for a band is the same as clipping it.
    pub fn band(&mut self, x: &[f64], lo: &[f64], hi: &[f64], color: RGBColor, alpha: f64) -> Result<()> {
        let (y0, y1) = self.yr;
        let show = |i: usize| [x[i], lo[i], hi[i]].iter().all(|v| v.is_finite()) && x[i] >= self.xr.0 && x[i] <= self.xr.1 && hi[i] >= y0 && lo[i] <= y1;
        let mut i = 0;
        while i < x.len() {
            let start = i;
            while i < x.len() && show(i) {
                i += 1;
            }
            if i - start >= 2 {
                let mut poly: Vec<(f64, f64)> = (start..i).map(|k| (x[k], hi[k].clamp(y0, y1))).collect();
                poly.extend((start..i).rev().map(|k| (x[k], lo[k].clamp(y0, y1))));
                self.ctx.draw_series(std::iter::once(Polygon::new(poly, color.mix(alpha).filled()))).px()?;
            }
            i += 1;
        }
        Ok(())
    }

    pub fn dot(&mut self, p: (f64, f64), r: u32, style: ShapeStyle) -> Result<()> {
        if p.0 >= self.xr.0 && p.0 <= self.xr.1 && p.1 >= self.yr.0 && p.1 <= self.yr.1 {
            self.ctx.draw_series(std::iter::once(Circle::new(p, r, style))).px()?;
        }
        Ok(())
    }

    /// Error bar from `a` to `b` with end caps; an end cut by the plot edge gets an
    /// arrow-head instead of a cap so a clipped whisker is never mistaken for a short one.
    pub fn whisker(&mut self, a: (f64, f64), b: (f64, f64), color: RGBColor) -> Result<()> {
        let style = color.stroke_width(2);
        for seg in clip_polyline(&[a, b], self.xr, self.yr) {
            let (s, e) = (seg[0], seg[seg.len() - 1]);
            self.ctx.draw_series(std::iter::once(PathElement::new(vec![s, e], style))).px()?;
            let (ps, pe) = (self.ctx.backend_coord(&s), self.ctx.backend_coord(&e));
            let horizontal = (pe.0 - ps.0).abs() >= (pe.1 - ps.1).abs();
            for (end, orig, p, q) in [(s, a, ps, pe), (e, b, pe, ps)] {
                let cut = (end.0 - orig.0).abs() + (end.1 - orig.1).abs() > 1e-12;
                let dir = if horizontal { (p.0 - q.0).signum() } else { (p.1 - q.1).signum() };
                let pts: Vec<(i32, i32)> = match (cut, horizontal) {
                    (false, true) => vec![(0, -6), (0, 6)],
                    (false, false) => vec![(-6, 0), (6, 0)],
                    (true, true) => vec![(-8 * dir, -6), (0, 0), (-8 * dir, 6)],
                    (true, false) => vec![(-6, -8 * dir), (0, 0), (6, -8 * dir)],
                };
                let el = EmptyElement::at(end) + PathElement::new(pts, style);
                self.ctx.draw_series(std::iter::once(el)).px()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_ranges() {
        assert_eq!(tick(3.456, 0.3), "3.46");
        assert_eq!(tick(20.0, 30.0), "20");
        assert_eq!(tick(-0.0001, 0.3), "0.00");
        assert_eq!(range_of([f64::NAN], 0.1), (0.0, 1.0));
        let (lo, hi) = range_of([1.0, 2.0], 0.1);
        assert!((lo - 0.9).abs() < 1e-12 && (hi - 2.1).abs() < 1e-12);
    }

    /// A legend label wider than its panel is wrapped at spaces, every line within the width.
    #[test]
    fn long_legend_labels_wrap_within_the_panel() {
        let mut buf = vec![0u8; 600 * 100 * 3];
        let area = BitMapBackend::with_buffer(&mut buf, (600, 100)).into_drawing_area();
        let label = "001_pristine gate=unset attention=unset dtype=bf16 memory_pool=shared (n=3)";
        let lines = fit(&area, label, 200);
        assert!(lines.len() >= 2, "{lines:?}");
        assert_eq!(lines.join(" "), label);
        assert!(lines.iter().all(|l| text_w(&area, l, 16.0) <= 200), "{lines:?}");
        assert_eq!(fit(&area, "short", 200), ["short"]);
    }
}

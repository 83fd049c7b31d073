//! The report's charts, drawn as inline SVG text: a phase over time (stacked bars or lines) and a horizontal bar
//! chart of counts. No script, font or style sheet of their own: colours and dashes are CSS classes the page
//! defines for light and dark mode, and each chart carries a `<title>` and a `<desc>` that say in words what it
//! shows, for readers who cannot see it (the page puts the numbers in tables beside it too).

use std::fmt::{self, Display, Formatter};

use super::{grouped, Escaped};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 280.0;
/// Room for the y axis's labels, the legend above the plot and the x axis's labels below it.
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 44.0;

/// One series of a time chart: a value per interval (`None` where there is none), drawn in its CSS class.
pub(super) struct Series<'a> {
    pub name: &'a str,
    pub class: &'static str,
    pub values: Vec<Option<f64>>,
}

/// How a time chart draws its series.
pub(super) enum Style {
    /// One bar per interval, the series stacked from the bottom (counts that add up).
    Stacked,
    /// A line per series through the middle of each interval, on a logarithmic scale (latencies that span decades).
    LogLines,
}

/// A dashed horizontal line with its own label, such as the baseline's average.
pub(super) struct Reference<'a> {
    pub label: &'a str,
    pub value: f64,
}

/// A phase over time: seconds since the phase started on x.
pub(super) struct TimeChart<'a> {
    /// Unique in the page: the title's and description's element ids derive from it.
    pub id: &'a str,
    pub title: &'a str,
    pub desc: &'a str,
    pub y_label: &'a str,
    /// Each interval's start and length, in seconds.
    pub intervals: Vec<(f64, f64)>,
    pub series: Vec<Series<'a>>,
    pub style: Style,
    pub reference: Option<Reference<'a>>,
}

/// Counts by label, one horizontal bar each.
pub(super) struct BarChart<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub desc: &'a str,
    pub rows: Vec<(&'a str, u64)>,
}

/// Where values land on one axis.
struct Scale {
    ticks: Vec<f64>,
    low: f64,
    high: f64,
    log: bool,
    /// The pixel range the values map onto; reversed for y, which grows downwards.
    from: f64,
    to: f64,
}

impl Scale {
    /// From zero to a round value at or above `max`: room above the tallest bar.
    fn linear(max: f64, from: f64, to: f64) -> Self {
        let ticks = linear_ticks(max, 4.0);
        let high = ticks.last().copied().unwrap_or(1.0);
        Self { ticks, low: 0.0, high, log: false, from, to }
    }

    /// From zero to exactly `end`, the end of a phase, with round ticks inside: no empty time after it.
    fn time(end: f64, from: f64, to: f64) -> Self {
        let high = if end.is_finite() && end > 0.0 { end } else { 1.0 };
        let ticks = linear_ticks(high, 6.0).into_iter().filter(|&tick| tick <= high * (1.0 + 1e-9)).collect();
        Self { ticks, low: 0.0, high, log: false, from, to }
    }

    fn logarithmic(min: f64, max: f64, from: f64, to: f64) -> Self {
        let ticks = log_ticks(min, max);
        let (low, high) = (ticks[0], ticks[ticks.len() - 1]);
        Self { ticks, low, high, log: true, from, to }
    }

    fn at(&self, value: f64) -> f64 {
        let share = if self.log {
            (value.max(self.low).log10() - self.low.log10()) / (self.high.log10() - self.low.log10())
        } else {
            (value - self.low) / (self.high - self.low)
        };
        self.from + share.clamp(0.0, 1.0) * (self.to - self.from)
    }
}

/// Ticks from zero to at least `max`, about `parts` steps at 1, 2 or 5 times a power of ten apart.
fn linear_ticks(max: f64, parts: f64) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let rough = max / parts;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|&step| step >= rough).unwrap_or(rough);
    let count = (max / step).ceil() as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

/// Powers of ten around `min..=max` (with 2 and 5 times each when they span no more than two decades).
fn log_ticks(min: f64, max: f64) -> Vec<f64> {
    let min = if min.is_finite() && min > 0.0 { min } else { 1.0 };
    let max = if max.is_finite() && max > min { max } else { min * 10.0 };
    let (low, high) = (min.log10().floor() as i32, max.log10().ceil() as i32);
    let high = high.max(low + 1);
    let multiples: &[f64] = if high - low <= 2 { &[1.0, 2.0, 5.0] } else { &[1.0] };
    let mut ticks: Vec<f64> =
        (low..high).flat_map(|exponent| multiples.iter().map(move |m| m * 10f64.powi(exponent))).collect();
    ticks.push(10f64.powi(high));
    ticks
}

/// A tick's label: `0.5`, `20`, `1.5k`, `2M`.
pub(super) fn short(value: f64) -> String {
    let (scaled, suffix) = match value.abs() {
        v if v >= 1e6 => (value / 1e6, "M"),
        v if v >= 1e3 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    let text = format!("{scaled:.3}");
    format!("{}{suffix}", text.trim_end_matches('0').trim_end_matches('.'))
}

/// The opening of a chart: the element, its title and description.
fn open(out: &mut Formatter<'_>, id: &str, title: &str, desc: &str, height: f64) -> fmt::Result {
    let id = Escaped(id);
    write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="{id}-title {id}-desc">"#
    )?;
    write!(out, r#"<title id="{id}-title">{}</title><desc id="{id}-desc">{}</desc>"#, Escaped(title), Escaped(desc))
}

/// One entry of a legend: a name, and the CSS class of its swatch, a line or a square.
struct Entry<'a> {
    name: &'a str,
    class: &'a str,
    line: bool,
}

/// The legend, in a row above the plot.
fn legend(out: &mut Formatter<'_>, entries: &[Entry<'_>]) -> fmt::Result {
    let mut x = LEFT;
    for Entry { name, class, line } in entries {
        if *line {
            write!(out, r#"<line class="{class}" x1="{x}" y1="12" x2="{}" y2="12"/>"#, x + 22.0)?;
        } else {
            write!(out, r#"<rect class="{class}" x="{x}" y="6" width="12" height="12"/>"#)?;
        }
        let text_x = x + if *line { 28.0 } else { 17.0 };
        write!(out, r#"<text x="{text_x}" y="16">{}</text>"#, Escaped(name))?;
        x = text_x + 7.5 * name.chars().count() as f64 + 18.0;
    }
    Ok(())
}

impl TimeChart<'_> {
    fn x_scale(&self) -> Scale {
        let end = self.intervals.last().map_or(1.0, |(start, length)| start + length);
        Scale::time(end, LEFT, WIDTH - RIGHT)
    }

    fn y_scale(&self) -> Scale {
        let (from, to) = (HEIGHT - BOTTOM, TOP);
        let reference = self.reference.as_ref().map_or(0.0, |reference| reference.value);
        match self.style {
            Style::Stacked => {
                let tallest = (0..self.intervals.len())
                    .map(|i| self.series.iter().filter_map(|series| series.values[i]).sum::<f64>())
                    .fold(reference, f64::max);
                Scale::linear(tallest, from, to)
            }
            Style::LogLines => {
                let values = || self.series.iter().flat_map(|series| series.values.iter().flatten().copied());
                let min = values().filter(|&value| value > 0.0).fold(f64::INFINITY, f64::min);
                let max = values().fold(reference, f64::max);
                Scale::logarithmic(min, max, from, to)
            }
        }
    }

    fn axes(&self, out: &mut Formatter<'_>, x: &Scale, y: &Scale) -> fmt::Result {
        let (bottom, top) = (HEIGHT - BOTTOM, TOP);
        out.write_str(r#"<g class="grid">"#)?;
        for &tick in &y.ticks {
            let at = y.at(tick);
            write!(out, r#"<line x1="{LEFT}" y1="{at:.1}" x2="{}" y2="{at:.1}"/>"#, WIDTH - RIGHT)?;
        }
        out.write_str("</g><g class=\"axis\">")?;
        write!(out, r#"<line x1="{LEFT}" y1="{bottom}" x2="{}" y2="{bottom}"/>"#, WIDTH - RIGHT)?;
        for &tick in &y.ticks {
            write!(
                out,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y.at(tick) + 4.0,
                short(tick)
            )?;
        }
        for &tick in &x.ticks {
            let at = x.at(tick);
            write!(out, r#"<line x1="{at:.1}" y1="{bottom}" x2="{at:.1}" y2="{}"/>"#, bottom + 4.0)?;
            write!(out, r#"<text x="{at:.1}" y="{}" text-anchor="middle">{}</text>"#, bottom + 17.0, short(tick))?;
        }
        write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">seconds since the phase started</text>"#,
            (LEFT + WIDTH - RIGHT) / 2.0,
            HEIGHT - 6.0
        )?;
        write!(
            out,
            r#"<text transform="translate(14 {}) rotate(-90)" text-anchor="middle">{}</text></g>"#,
            (top + bottom) / 2.0,
            Escaped(self.y_label)
        )
    }

    fn bars(&self, out: &mut Formatter<'_>, x: &Scale, y: &Scale) -> fmt::Result {
        for (i, &(start, length)) in self.intervals.iter().enumerate() {
            let (left, right) = (x.at(start), x.at(start + length));
            let gap = ((right - left) * 0.1).min(2.0);
            let width = (right - left - gap).max(0.5);
            let mut base = 0.0;
            for series in &self.series {
                let Some(value) = series.values[i].filter(|&value| value > 0.0) else { continue };
                let (top, bottom) = (y.at(base + value), y.at(base));
                write!(
                    out,
                    r#"<rect class="{}" x="{left:.1}" y="{top:.1}" width="{width:.1}" height="{:.1}"/>"#,
                    series.class,
                    bottom - top
                )?;
                base += value;
            }
        }
        Ok(())
    }

    fn lines(&self, out: &mut Formatter<'_>, x: &Scale, y: &Scale) -> fmt::Result {
        let middles: Vec<f64> = self.intervals.iter().map(|&(start, length)| x.at(start + length / 2.0)).collect();
        for series in &self.series {
            // A line breaks where an interval has no value; a point with no neighbour is drawn as a dot.
            for run in series.values.iter().enumerate().collect::<Vec<_>>().split(|(_, value)| value.is_none()) {
                let points: Vec<(f64, f64)> =
                    run.iter().filter_map(|&(i, value)| value.map(|value| (middles[i], y.at(value)))).collect();
                match points.as_slice() {
                    [] => {}
                    [(cx, cy)] => write!(out, r#"<circle class="{}" cx="{cx:.1}" cy="{cy:.1}" r="3"/>"#, series.class)?,
                    _ => {
                        write!(out, r#"<polyline class="line {}" points=""#, series.class)?;
                        for (px, py) in points {
                            write!(out, "{px:.1},{py:.1} ")?;
                        }
                        out.write_str(r#""/>"#)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Display for TimeChart<'_> {
    fn fmt(&self, out: &mut Formatter<'_>) -> fmt::Result {
        open(out, self.id, self.title, self.desc, HEIGHT)?;
        let (x, y) = (self.x_scale(), self.y_scale());
        self.axes(out, &x, &y)?;
        let lines = matches!(self.style, Style::LogLines);
        if lines {
            self.lines(out, &x, &y)?;
        } else {
            self.bars(out, &x, &y)?;
        }
        let line_classes: Vec<String> = self.series.iter().map(|series| format!("line {}", series.class)).collect();
        let mut entries: Vec<Entry<'_>> = self
            .series
            .iter()
            .zip(&line_classes)
            .map(|(series, line_class)| Entry {
                name: series.name,
                class: if lines { line_class } else { series.class },
                line: lines,
            })
            .collect();
        if let Some(reference) = &self.reference {
            let at = y.at(reference.value);
            write!(out, r#"<line class="reference" x1="{LEFT}" y1="{at:.1}" x2="{}" y2="{at:.1}"/>"#, WIDTH - RIGHT)?;
            entries.push(Entry { name: reference.label, class: "reference", line: true });
        }
        legend(out, &entries)?;
        out.write_str("</svg>")
    }
}

impl Display for BarChart<'_> {
    fn fmt(&self, out: &mut Formatter<'_>) -> fmt::Result {
        const ROW: f64 = 24.0;
        const LABELS: f64 = 220.0;
        let height = TOP / 2.0 + ROW * self.rows.len().max(1) as f64 + BOTTOM / 2.0;
        open(out, self.id, self.title, self.desc, height)?;
        let most = self.rows.iter().map(|&(_, count)| count).max().unwrap_or(0) as f64;
        let scale = Scale::linear(most, LABELS, WIDTH - RIGHT - 80.0);
        for (i, &(label, count)) in self.rows.iter().enumerate() {
            let y = TOP / 2.0 + ROW * i as f64;
            let end = scale.at(count as f64);
            write!(
                out,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                LABELS - 8.0,
                y + 16.0,
                Escaped(label)
            )?;
            write!(
                out,
                r#"<rect class="s-bar" x="{LABELS}" y="{:.1}" width="{:.1}" height="{}"/>"#,
                y + 4.0,
                end - LABELS,
                ROW - 8.0
            )?;
            write!(out, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, end + 6.0, y + 16.0, grouped(count))?;
        }
        out.write_str("</svg>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_round_and_cover_the_maximum() {
        assert_eq!(linear_ticks(9_300.0, 4.0), [0.0, 5_000.0, 10_000.0]);
        assert_eq!(linear_ticks(4.0, 4.0), [0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(linear_ticks(0.0, 4.0), [0.0, 0.5, 1.0]);
        let ticks = linear_ticks(0.37, 4.0);
        assert!(ticks.len() >= 3 && ticks[ticks.len() - 1] >= 0.37, "{ticks:?}");
    }

    #[test]
    fn log_ticks_span_whole_decades() {
        assert_eq!(log_ticks(0.3, 45.0), [0.1, 1.0, 10.0, 100.0]);
        assert_eq!(log_ticks(2.5, 40.0), [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]);
        assert_eq!(log_ticks(f64::INFINITY, 0.0), [1.0, 2.0, 5.0, 10.0]);
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(short(0.0), "0");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(1_500.0), "1.5k");
        assert_eq!(short(20_000.0), "20k");
        assert_eq!(short(2_000_000.0), "2M");
    }

    #[test]
    fn scales_map_values_onto_pixels() {
        let linear = Scale::linear(10.0, 0.0, 100.0);
        assert_eq!((linear.at(0.0), linear.at(5.0), linear.at(20.0)), (0.0, 50.0, 100.0));
        let time = Scale::time(2.08, 0.0, 208.0);
        assert_eq!(time.ticks, [0.0, 0.5, 1.0, 1.5, 2.0]);
        assert_eq!(time.at(2.08), 208.0, "the axis ends with the phase");
        let log = Scale::logarithmic(1.0, 100.0, 100.0, 0.0);
        assert_eq!((log.at(1.0), log.at(10.0), log.at(100.0)), (100.0, 50.0, 0.0));
        assert_eq!(log.at(0.0), 100.0, "zero sits at the bottom of a log scale");
    }

    fn chart(style: Style, values: Vec<Option<f64>>) -> String {
        TimeChart {
            id: "c",
            title: "A <title>",
            desc: "Described & drawn",
            y_label: "req/s",
            intervals: (0..values.len()).map(|i| (i as f64 * 0.5, 0.5)).collect(),
            series: vec![Series { name: "p50", class: "s-p50", values }],
            style,
            reference: Some(Reference { label: "baseline", value: 3.0 }),
        }
        .to_string()
    }

    #[test]
    fn a_chart_is_titled_described_and_escaped() {
        let svg = chart(Style::Stacked, vec![Some(1.0), Some(2.0)]);
        assert!(
            svg.starts_with(r#"<svg class="chart" viewBox="0 0 720 280" role="img" aria-labelledby="c-title c-desc">"#)
        );
        assert!(svg
            .contains(r#"<title id="c-title">A &lt;title&gt;</title><desc id="c-desc">Described &amp; drawn</desc>"#));
        assert_eq!(svg.matches("<rect class=\"s-p50\"").count(), 3, "two bars and the legend's swatch");
        assert_eq!(svg.matches("class=\"reference\"").count(), 2, "the line and its legend");
        assert!(svg.ends_with("</svg>"));
    }

    #[test]
    fn lines_break_where_an_interval_has_no_value() {
        let svg = chart(Style::LogLines, vec![Some(1.0), Some(2.0), None, Some(4.0)]);
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1, "the lone last point is a dot");
    }

    #[test]
    fn bar_charts_have_a_bar_per_row() {
        let chart = BarChart { id: "o", title: "Outcomes", desc: "d", rows: vec![("202", 10), ("409 <SOLD_OUT>", 90)] };
        let svg = chart.to_string();
        assert_eq!(svg.matches("<rect class=\"s-bar\"").count(), 2);
        assert!(svg.contains("409 &lt;SOLD_OUT&gt;"));
    }
}

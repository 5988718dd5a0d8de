//! SVG charts of the report (plotters): ROC curves, the monthly overdue rate and NPL
//! ratio, disbursement by purpose.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::report::Report;

const SIZE: (u32, u32) = (720, 480);

pub fn draw(dir: &Path, report: &Report) -> anyhow::Result<()> {
    roc(&dir.join("roc.svg"), report).map_err(|err| anyhow!("roc.svg: {err}"))?;
    monthly(&dir.join("monthly.svg"), report).map_err(|err| anyhow!("monthly.svg: {err}"))?;
    purpose(&dir.join("purpose.svg"), report).map_err(|err| anyhow!("purpose.svg: {err}"))?;
    Ok(())
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn roc(path: &Path, report: &Report) -> DrawResult {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("ROC of the application scores", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("false positive rate (goods flagged)")
        .y_desc("true positive rate (defaulters flagged)")
        .draw()?;
    chart
        .draw_series(LineSeries::new(report.roc_full.iter().copied(), &BLUE))?
        .label(format!("full model, AUC {:.3}", report.auc_full))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            report.roc_without_social.iter().copied(),
            &RED,
        ))?
        .label(format!(
            "without social, AUC {:.3}",
            report.auc_without_social
        ))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], &BLACK.mix(0.3)))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present()?;
    Ok(())
}

fn monthly(path: &Path, report: &Report) -> DrawResult {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let top = report
        .monthly
        .iter()
        .flat_map(|m| [m.overdue_rate, m.npl_ratio])
        .filter(|value| value.is_finite())
        .fold(0.01f64, f64::max)
        * 1.2;
    let months = report.months.max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption("Overdue rate and NPL ratio by month", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0u32..months, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("month")
        .y_desc("share of outstanding principal")
        .draw()?;
    let series = |pick: fn(&crate::report::MonthFigures) -> f64| {
        report
            .monthly
            .iter()
            .map(move |m| (m.month, pick(m)))
            .collect::<Vec<_>>()
    };
    chart
        .draw_series(LineSeries::new(series(|m| m.overdue_rate), &BLUE))?
        .label("overdue rate (principal past due)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(series(|m| m.npl_ratio), &RED))?
        .label("NPL ratio (90+ DPD)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present()?;
    Ok(())
}

fn purpose(path: &Path, report: &Report) -> DrawResult {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let purposes: Vec<(&String, f64)> = report
        .disbursed_by_purpose
        .iter()
        .map(|(name, figures)| (name, figures.principal_minor as f64 / 100.0))
        .collect();
    let top = purposes.iter().map(|(_, v)| *v).fold(1.0f64, f64::max) * 1.15;
    let count = purposes.len().max(1) as u32;
    let mut chart = ChartBuilder::on(&root)
        .caption("Principal disbursed by purpose (CNY)", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d((0u32..count).into_segmented(), 0f64..top)?;
    let names: Vec<String> = purposes.iter().map(|(name, _)| (*name).clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(purposes.len().max(1))
        .x_label_formatter(&|segment| match segment {
            SegmentValue::CenterOf(index) | SegmentValue::Exact(index) => {
                names.get(*index as usize).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .y_desc("CNY")
        .draw()?;
    chart.draw_series(
        Histogram::vertical(&chart)
            .style(BLUE.mix(0.6).filled())
            .margin(12)
            .data(
                purposes
                    .iter()
                    .enumerate()
                    .map(|(index, (_, value))| (index as u32, *value)),
            ),
    )?;
    root.present()?;
    Ok(())
}

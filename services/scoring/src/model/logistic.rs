//! L2-regularised logistic regression fit by Newton's method (IRLS) with sample weights.
//!
//! Maximises Σᵢ wᵢ [yᵢ ηᵢ − ln(1 + e^ηᵢ)] − λ/2 ‖β‖², ηᵢ = α + xᵢ·β; the intercept α is
//! not penalised. Each step solves (XᵀWX + λI′) δ = Xᵀw(y − p) − λβ′ by Cholesky, halving
//! the step while the objective would fall.
//!
//! Why no linear-algebra crate: the only matrix work is one (p+1)×(p+1) symmetric
//! positive-definite solve per iteration with p ≤ a few dozen features; forty lines of
//! Cholesky are easier to audit than a dependency (and its BLAS features) for that.

use serde::{Deserialize, Serialize};

/// Default L2 penalty λ (on the log-likelihood summed over rows, so its pull weakens as
/// the data grows).
pub const L2_PENALTY: f64 = 1.0;
/// Default bound on Newton iterations (IRLS converges in well under 20 on scorecard data).
pub const MAX_ITERATIONS: usize = 100;
/// Default convergence tolerance on the largest coefficient change.
pub const TOLERANCE: f64 = 1e-9;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogisticOptions {
    pub l2_penalty: f64,
    pub max_iterations: usize,
    pub tolerance: f64,
}

impl Default for LogisticOptions {
    fn default() -> Self {
        Self {
            l2_penalty: L2_PENALTY,
            max_iterations: MAX_ITERATIONS,
            tolerance: TOLERANCE,
        }
    }
}

/// The fitted model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticFit {
    pub intercept: f64,
    pub coefficients: Vec<f64>,
    pub iterations: usize,
    pub converged: bool,
}

impl LogisticFit {
    /// The linear predictor α + x·β (log-odds of y = 1).
    pub fn log_odds(&self, x: &[f64]) -> f64 {
        self.intercept
            + self
                .coefficients
                .iter()
                .zip(x)
                .map(|(b, x)| b * x)
                .sum::<f64>()
    }
}

/// The Hessian was not positive definite (a constant or duplicated column with no
/// penalty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SingularSystem;

/// The design: `rows` × `columns`, row-major, without the intercept column.
#[derive(Debug, Clone, Copy)]
pub struct Design<'a> {
    pub x: &'a [f64],
    pub columns: usize,
    /// 1.0 for the modelled outcome, 0.0 otherwise.
    pub y: &'a [f64],
    pub weights: &'a [f64],
}

impl Design<'_> {
    fn rows(&self) -> usize {
        self.y.len()
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.columns..(i + 1) * self.columns]
    }
}

/// ln(1 + e^η) without overflow.
fn softplus(eta: f64) -> f64 {
    if eta > 0.0 {
        eta + (-eta).exp().ln_1p()
    } else {
        eta.exp().ln_1p()
    }
}

fn sigmoid(eta: f64) -> f64 {
    if eta >= 0.0 {
        1.0 / (1.0 + (-eta).exp())
    } else {
        let e = eta.exp();
        e / (1.0 + e)
    }
}

/// θ = (α, β…).
fn objective(design: &Design<'_>, theta: &[f64], l2: f64) -> f64 {
    let mut total = 0.0;
    for i in 0..design.rows() {
        let eta = linear(theta, design.row(i));
        total += design.weights[i] * (design.y[i] * eta - softplus(eta));
    }
    total - 0.5 * l2 * theta[1..].iter().map(|b| b * b).sum::<f64>()
}

fn linear(theta: &[f64], x: &[f64]) -> f64 {
    theta[0] + theta[1..].iter().zip(x).map(|(b, x)| b * x).sum::<f64>()
}

/// Fits P(y = 1 | x). Starts from β = 0 and α = the weighted base log-odds.
pub fn fit(design: &Design<'_>, options: &LogisticOptions) -> Result<LogisticFit, SingularSystem> {
    let n = design.rows();
    let p = design.columns;
    assert_eq!(design.x.len(), n * p, "x is rows × columns");
    assert_eq!(design.weights.len(), n, "one weight per row");
    let dim = p + 1;
    let positive: f64 = (0..n).map(|i| design.weights[i] * design.y[i]).sum();
    let total: f64 = design.weights.iter().sum();
    let mut theta = vec![0.0; dim];
    if positive > 0.0 && positive < total {
        theta[0] = (positive / (total - positive)).ln();
    }
    let l2 = options.l2_penalty;
    let mut current = objective(design, &theta, l2);
    let mut hessian = vec![0.0; dim * dim];
    let mut gradient = vec![0.0; dim];
    let mut xi = vec![0.0; dim];
    for iteration in 1..=options.max_iterations {
        hessian.iter_mut().for_each(|h| *h = 0.0);
        gradient.iter_mut().for_each(|g| *g = 0.0);
        for i in 0..n {
            xi[0] = 1.0;
            xi[1..].copy_from_slice(design.row(i));
            let prob = sigmoid(linear(&theta, &xi[1..]));
            let w = design.weights[i];
            let residual = w * (design.y[i] - prob);
            let curvature = w * prob * (1.0 - prob);
            for a in 0..dim {
                gradient[a] += residual * xi[a];
                let row = &mut hessian[a * dim..(a + 1) * dim];
                for b in 0..=a {
                    row[b] += curvature * xi[a] * xi[b];
                }
            }
        }
        for a in 1..dim {
            gradient[a] -= l2 * theta[a];
            hessian[a * dim + a] += l2;
        }
        let step = cholesky_solve(&mut hessian, dim, &gradient)?;
        // Step halving keeps Newton monotone on the (concave) objective.
        let mut scale = 1.0;
        let mut candidate: Vec<f64>;
        loop {
            candidate = theta
                .iter()
                .zip(&step)
                .map(|(t, s)| t + scale * s)
                .collect();
            let value = objective(design, &candidate, l2);
            if value >= current - 1e-12 * current.abs().max(1.0) || scale < 1e-6 {
                current = value;
                break;
            }
            scale *= 0.5;
        }
        let change = step.iter().map(|s| (scale * s).abs()).fold(0.0, f64::max);
        theta = candidate;
        if change < options.tolerance {
            return Ok(LogisticFit {
                intercept: theta[0],
                coefficients: theta[1..].to_vec(),
                iterations: iteration,
                converged: true,
            });
        }
    }
    Ok(LogisticFit {
        intercept: theta[0],
        coefficients: theta[1..].to_vec(),
        iterations: options.max_iterations,
        converged: false,
    })
}

/// Solves A x = b for symmetric positive-definite A (`dim`×`dim`, row-major, only the
/// lower triangle read), overwriting A's lower triangle with its Cholesky factor L.
pub fn cholesky_solve(a: &mut [f64], dim: usize, b: &[f64]) -> Result<Vec<f64>, SingularSystem> {
    for j in 0..dim {
        let mut diagonal = a[j * dim + j];
        for k in 0..j {
            diagonal -= a[j * dim + k] * a[j * dim + k];
        }
        if diagonal <= 1e-12 || !diagonal.is_finite() {
            return Err(SingularSystem);
        }
        let diagonal = diagonal.sqrt();
        a[j * dim + j] = diagonal;
        for i in j + 1..dim {
            let mut value = a[i * dim + j];
            for k in 0..j {
                value -= a[i * dim + k] * a[j * dim + k];
            }
            a[i * dim + j] = value / diagonal;
        }
    }
    // L z = b, then Lᵀ x = z.
    let mut z = b.to_vec();
    for i in 0..dim {
        for k in 0..i {
            z[i] -= a[i * dim + k] * z[k];
        }
        z[i] /= a[i * dim + i];
    }
    for i in (0..dim).rev() {
        for k in i + 1..dim {
            z[i] -= a[k * dim + i] * z[k];
        }
        z[i] /= a[i * dim + i];
    }
    Ok(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpenalised() -> LogisticOptions {
        LogisticOptions {
            l2_penalty: 0.0,
            ..LogisticOptions::default()
        }
    }

    #[test]
    fn cholesky_solves_a_small_spd_system() {
        // A = [[4, 2], [2, 3]], b = [2, 1] → x = [0.5, 0].
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let x = cholesky_solve(&mut a, 2, &[2.0, 1.0]).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12);
        let mut singular = vec![1.0, 1.0, 1.0, 1.0];
        assert_eq!(
            cholesky_solve(&mut singular, 2, &[1.0, 1.0]),
            Err(SingularSystem)
        );
    }

    #[test]
    fn one_binary_feature_recovers_the_two_cell_log_odds() {
        // x = 0: 3 of 4 positive → α = ln 3; x = 1: 1 of 4 → α + β = ln(1/3), β = −2 ln 3.
        let x = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        let y = [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0];
        let w = [1.0; 8];
        let design = Design {
            x: &x,
            columns: 1,
            y: &y,
            weights: &w,
        };
        let fit = fit(&design, &unpenalised()).unwrap();
        assert!(fit.converged);
        assert!((fit.intercept - 3.0_f64.ln()).abs() < 1e-8, "{fit:?}");
        assert!((fit.coefficients[0] + 2.0 * 3.0_f64.ln()).abs() < 1e-8);
    }

    #[test]
    fn a_weight_of_two_is_the_same_as_the_row_twice() {
        let x = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5];
        let y = [0.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        let weighted = fit(
            &Design {
                x: &x,
                columns: 1,
                y: &y,
                weights: &[2.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            },
            &LogisticOptions::default(),
        )
        .unwrap();
        let repeated = fit(
            &Design {
                x: &[0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5],
                columns: 1,
                y: &[0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0],
                weights: &[1.0; 7],
            },
            &LogisticOptions::default(),
        )
        .unwrap();
        assert!((weighted.intercept - repeated.intercept).abs() < 1e-9);
        assert!((weighted.coefficients[0] - repeated.coefficients[0]).abs() < 1e-9);
    }

    #[test]
    fn the_penalised_fit_satisfies_its_stationarity_condition() {
        // At the optimum: Σ w(y − p) = 0 and Σ w(y − p)x_j = λ β_j.
        let x = [
            0.2, 1.0, -0.4, 0.3, 1.1, -0.2, -0.7, 0.5, 0.9, -1.2, 0.1, 0.0, -0.3, 0.8, 1.4, -0.5,
        ];
        let y = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0];
        let w = [1.0, 2.0, 1.0, 0.5, 1.0, 1.0, 3.0, 1.0];
        let design = Design {
            x: &x,
            columns: 2,
            y: &y,
            weights: &w,
        };
        let options = LogisticOptions {
            l2_penalty: 2.0,
            ..LogisticOptions::default()
        };
        let fit = fit(&design, &options).unwrap();
        assert!(fit.converged);
        let mut score = [0.0; 3];
        for i in 0..8 {
            let row = &x[2 * i..2 * i + 2];
            let residual = w[i] * (y[i] - sigmoid(fit.log_odds(row)));
            score[0] += residual;
            score[1] += residual * row[0];
            score[2] += residual * row[1];
        }
        assert!(score[0].abs() < 1e-9);
        assert!((score[1] - 2.0 * fit.coefficients[0]).abs() < 1e-9);
        assert!((score[2] - 2.0 * fit.coefficients[1]).abs() < 1e-9);
    }

    #[test]
    fn separable_data_stays_finite_under_the_penalty() {
        let x = [0.0, 1.0, 2.0, 3.0];
        let y = [0.0, 0.0, 1.0, 1.0];
        let fit = fit(
            &Design {
                x: &x,
                columns: 1,
                y: &y,
                weights: &[1.0; 4],
            },
            &LogisticOptions::default(),
        )
        .unwrap();
        assert!(fit.converged && fit.coefficients[0].is_finite() && fit.coefficients[0] > 0.0);
    }
}

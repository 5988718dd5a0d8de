//! The scorecard trainer: a points-based scorecard fitted from any CSV with a binary
//! target (DESIGN §5, docs/scoring-model.md).
//!
//! The pipeline, one module a step, all pure (no file or network I/O outside [`cli`]):
//! [`dataset`] (typed columns) → [`binning`] (WOE bins, IV) → IV selection and
//! [`logistic`] (L2 IRLS on the WOE values) → [`scaling`] (points to double the odds) →
//! [`scorecard`] (integer points per bin, the score) → [`artefact`] (versioned JSON with
//! its sha256); [`metrics`] (AUC, KS, Gini) and [`validation`] (repeated stratified
//! K-fold) measure it.

pub mod artefact;
pub mod binning;
pub mod cli;
pub mod dataset;
pub mod logistic;
pub mod metrics;
pub mod population;
pub mod scaling;
pub mod scorecard;
pub mod validation;

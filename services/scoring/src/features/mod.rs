//! Features per customer (DESIGN §5, docs/scoring-features.md), grouped as the proto's
//! `FeatureGroup`. The arithmetic is pure ([`social`], [`graph`], [`behaviour`],
//! [`history`]); [`features_for`] reads what the signals keep up to date in Postgres
//! and applies it. A customer with no signals gets a vector like any other: counts at
//! 0 (component size 1) and the ratios that have nothing to divide by missing (`None`,
//! the scorecard's missing bin), never an error.

pub mod behaviour;
pub mod cache;
pub mod graph;
pub mod history;
pub mod offline;
pub mod social;

use microloan_proto::scoring::v1::{FeatureGroup, RepaymentOutcomeKind};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::store::features as store;

/// One feature's value; `None` is missing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Feature {
    /// lower_snake_case, as a scorecard names it.
    pub name: &'static str,
    pub group: FeatureGroup,
    pub value: Option<f64>,
}

/// Every feature of one customer, in a fixed order (social, behaviour, history, identity).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureVector {
    pub customer_id: Uuid,
    pub features: Vec<Feature>,
}

impl FeatureVector {
    /// The value of `name`: `None` if no such feature, `Some(None)` if missing.
    pub fn get(&self, name: &str) -> Option<Option<f64>> {
        self.features
            .iter()
            .find(|feature| feature.name == name)
            .map(|feature| feature.value)
    }

    /// The names of every feature, in order.
    pub fn names() -> Vec<&'static str> {
        FeatureValues::default()
            .into_vector(Uuid::nil())
            .features
            .iter()
            .map(|feature| feature.name)
            .collect()
    }
}

/// The computed groups before they are listed by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureValues {
    pub local: social::Local,
    pub pagerank: f64,
    pub component_size: f64,
    pub component_bad_rate: Option<f64>,
    pub behaviour: behaviour::Behaviour,
    pub on_time_ratio: Option<f64>,
    pub max_days_past_due: Option<f64>,
    pub utilisation: Option<f64>,
    pub customers_per_device: f64,
    pub customers_per_phone: f64,
}

impl FeatureValues {
    pub fn into_vector(self, customer_id: Uuid) -> FeatureVector {
        use FeatureGroup::{Behaviour, History, Identity, Social};
        let weighted = self.local.weighted;
        let b = &self.behaviour;
        let entries: [(&'static str, FeatureGroup, Option<f64>); 22] = [
            ("degree", Social, Some(self.local.degree)),
            (
                "weighted_degree_transfer_fen",
                Social,
                Some(weighted.transfer_fen),
            ),
            (
                "weighted_degree_red_packet_fen",
                Social,
                Some(weighted.red_packet_fen),
            ),
            ("weighted_degree_messages", Social, Some(weighted.messages)),
            ("weighted_degree_calls", Social, Some(weighted.calls)),
            ("weighted_degree_contacts", Social, Some(weighted.contacts)),
            (
                "weighted_degree_group_members",
                Social,
                Some(weighted.group_members),
            ),
            ("one_hop_bad_rate", Social, self.local.one_hop_bad_rate),
            ("two_hop_bad_rate", Social, self.local.two_hop_bad_rate),
            ("defaulter_pagerank", Social, Some(self.pagerank)),
            ("component_size", Social, Some(self.component_size.max(1.0))),
            ("component_bad_rate", Social, self.component_bad_rate),
            ("income_monthly_mean", Behaviour, b.income_monthly_mean),
            ("income_stability", Behaviour, b.income_stability),
            ("spend_volatility", Behaviour, b.spend_volatility),
            ("risky_spend_share", Behaviour, b.risky_spend_share),
            ("distinct_lenders", Behaviour, Some(b.distinct_lenders)),
            ("on_time_ratio", History, self.on_time_ratio),
            ("max_days_past_due", History, self.max_days_past_due),
            ("utilisation", History, self.utilisation),
            (
                "customers_per_device",
                Identity,
                Some(self.customers_per_device),
            ),
            (
                "customers_per_phone",
                Identity,
                Some(self.customers_per_phone),
            ),
        ];
        FeatureVector {
            customer_id,
            features: entries
                .into_iter()
                .map(|(name, group, value)| Feature { name, group, value })
                .collect(),
        }
    }
}

/// The features of `customer_id` from the store, as the later Evaluate scores them.
/// Reads only the customer's own rows and its two-hop neighbourhood (bounded, see
/// [`store::NEIGHBOURS_READ_MAX`]); the PageRank is the last refresh's.
pub async fn features_for(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<FeatureVector, sqlx::Error> {
    let party = customer_id.to_string();
    let hood = store::neighbourhood(conn, &party).await?;
    let inputs = store::customer_inputs(conn, customer_id, None, None).await?;
    Ok(assemble(
        customer_id,
        &hood,
        &inputs.scalars,
        &inputs.months,
        &inputs.outcomes,
    ))
}

/// The features from a customer's feature inputs, however they were read: the live
/// path reads them from Postgres ([`features_for`]), training computes them in memory
/// ([`offline`]); both end here, so a model is trained on the numbers it is served.
pub fn assemble(
    customer_id: Uuid,
    hood: &social::Neighbourhood,
    own: &store::CustomerScalars,
    months: &[behaviour::MonthTotals],
    outcomes: &[RepaymentOutcomeKind],
) -> FeatureVector {
    assemble_local(
        customer_id,
        social::local_features(hood),
        own,
        months,
        outcomes,
    )
}

/// [`assemble`] from the neighbourhood's features already computed (Evaluate keeps
/// them in its [`cache::GraphCache`]).
pub fn assemble_local(
    customer_id: Uuid,
    local: social::Local,
    own: &store::CustomerScalars,
    months: &[behaviour::MonthTotals],
    outcomes: &[RepaymentOutcomeKind],
) -> FeatureVector {
    let self_defaulter = own.credit.is_some_and(|(_, defaulter)| defaulter);
    let (size, defaulters) = own.component.unwrap_or((1, 0));
    let (component_size, component_bad_rate) =
        social::component_features(size, defaulters, self_defaulter);
    FeatureValues {
        local,
        pagerank: own.pagerank,
        component_size,
        component_bad_rate,
        behaviour: behaviour::behaviour_features(months, own.distinct_lenders),
        on_time_ratio: history::on_time_ratio(outcomes),
        max_days_past_due: own.credit.map(|(days, _)| f64::from(days)),
        utilisation: own
            .line
            .and_then(|(limit, available)| history::utilisation(limit, available)),
        customers_per_device: own.customers_per_device as f64,
        customers_per_phone: own.customers_per_phone as f64,
    }
    .into_vector(customer_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_grouped_in_order() {
        let names = FeatureVector::names();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        let vector = FeatureValues::default().into_vector(Uuid::nil());
        let groups: Vec<i32> = vector.features.iter().map(|f| f.group as i32).collect();
        assert!(groups.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(vector.get("component_size"), Some(Some(1.0)));
        assert_eq!(vector.get("no_such_feature"), None);
    }
}

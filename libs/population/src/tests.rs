use std::collections::{BTreeMap, BTreeSet};

use super::*;

fn small(seed: u64) -> Population {
    Population::generate(&PopulationConfig::new(seed, 1_500))
}

#[test]
fn the_same_seed_gives_the_same_population_and_another_seed_another() {
    let a = small(11);
    assert_eq!(a, small(11));
    assert_eq!(a.observed_signals(), small(11).observed_signals());
    let b = small(12);
    assert_ne!(a.people[0].customer_id, b.people[0].customer_id);
    assert_ne!(a.edges, b.edges);
}

#[test]
fn the_purpose_mix_is_seventy_twenty_ten() {
    let population = Population::generate(&PopulationConfig::new(3, 10_000));
    let mut counts: BTreeMap<LoanPurpose, usize> = BTreeMap::new();
    for person in &population.people {
        *counts.entry(person.purpose).or_default() += 1;
    }
    let share = |purpose| counts.get(&purpose).copied().unwrap_or(0) as f64 / 10_000.0;
    assert!((share(LoanPurpose::Consumption) - 0.70).abs() < 0.02);
    assert!((share(LoanPurpose::SmallBusiness) - 0.20).abs() < 0.02);
    let rest = 1.0 - share(LoanPurpose::Consumption) - share(LoanPurpose::SmallBusiness);
    assert!((rest - 0.10).abs() < 0.02, "{rest}");
    assert!(counts.len() >= 5, "the other purposes appear: {counts:?}");
}

#[test]
fn fraud_rings_share_devices_and_phones() {
    let population = small(5);
    let rings: BTreeSet<u32> = population
        .people
        .iter()
        .filter_map(|p| p.fraud_ring)
        .collect();
    assert_eq!(rings.len(), 1, "1,500 people: one ring");
    let ring_members: BTreeSet<Uuid> = population
        .people
        .iter()
        .filter(|p| p.fraud_ring.is_some())
        .map(|p| p.customer_id)
        .collect();
    assert_eq!(ring_members.len(), population.config.fraud_ring_size);
    let mut device_customers: BTreeMap<&str, BTreeSet<Uuid>> = BTreeMap::new();
    let mut phone_customers: BTreeMap<&str, BTreeSet<Uuid>> = BTreeMap::new();
    for sighting in &population.sightings {
        let map = match sighting.kind {
            IdentifierKind::Device => &mut device_customers,
            IdentifierKind::Phone => &mut phone_customers,
            _ => continue,
        };
        map.entry(sighting.identifier.as_str())
            .or_default()
            .insert(sighting.customer_id);
    }
    // Two devices carry the whole ring; households share a device by two at most.
    let ring_devices: Vec<_> = device_customers
        .values()
        .filter(|customers| **customers == ring_members)
        .collect();
    assert_eq!(ring_devices.len(), 2);
    assert!(
        device_customers
            .values()
            .filter(|customers| **customers != ring_members)
            .all(|customers| customers.len() <= 3)
    );
    let shared_phone = phone_customers
        .values()
        .find(|customers| customers.len() > 1)
        .expect("the ring's phone");
    assert!(shared_phone.is_subset(&ring_members));
    // Ring members are riskier than the population.
    let ring_pd: f64 = population
        .people
        .iter()
        .filter(|p| p.fraud_ring.is_some())
        .map(|p| p.default_probability)
        .sum::<f64>()
        / ring_members.len() as f64;
    assert!(ring_pd > 0.3, "{ring_pd}");
}

#[test]
fn risk_clusters_in_communities_and_contacts_stay_mostly_inside() {
    let population = small(9);
    let community: BTreeMap<String, u32> = population
        .people
        .iter()
        .map(|p| (p.customer_id.to_string(), p.community))
        .collect();
    let (mut inside, mut between) = (0, 0);
    for edge in population
        .edges
        .iter()
        .filter(|e| e.kind == SocialEdgeKind::Contact)
    {
        match (
            community.get(&edge.source_party_id),
            community.get(&edge.target_party_id),
        ) {
            (Some(a), Some(b)) if a == b => inside += 1,
            (Some(_), Some(_)) => between += 1,
            _ => {}
        }
    }
    let inside_share = inside as f64 / (inside + between) as f64;
    assert!(inside_share > 0.65, "{inside_share}");
    // Default rates differ between communities far more than chance would make them.
    let mut by_community: BTreeMap<u32, (f64, f64)> = BTreeMap::new();
    for person in &population.people {
        let entry = by_community.entry(person.community).or_default();
        entry.0 += person.default_probability;
        entry.1 += 1.0;
    }
    let means: Vec<f64> = by_community.values().map(|(sum, n)| sum / n).collect();
    let spread = means.iter().cloned().fold(f64::MIN, f64::max)
        - means.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 0.2, "{spread}");
}

#[test]
fn observed_signals_precede_the_application_and_outcomes_follow_it() {
    let population = small(4);
    let at = population.config.application_time;
    assert!(population.edges.iter().all(|e| e.occur_time < at));
    assert!(population.behaviour.iter().all(|e| e.occur_time < at));
    assert!(population.sightings.iter().all(|s| s.observe_time < at));
    assert!(population.history.iter().all(|o| o.observe_time < at));
    assert!(population.future.iter().all(|o| o.observe_time > at));
    // The label is what the application loan's outcomes say.
    let defaulted: BTreeSet<Uuid> = population
        .future
        .iter()
        .filter(|o| o.days_past_due >= 90)
        .map(|o| o.customer_id)
        .collect();
    for person in &population.people {
        assert_eq!(person.defaults, defaulted.contains(&person.customer_id));
    }
    let rate = population.default_rate();
    assert!((0.08..0.3).contains(&rate), "{rate}");
    // Batches of 1,000 with distinct ids.
    let signals = population.observed_signals();
    let count = signals.len();
    let batches = batches(signals, "pop-4", 1_000);
    assert_eq!(batches.len(), count.div_ceil(1_000));
    assert!(batches.iter().all(|b| b.signals.len() <= 1_000));
    assert_eq!(batches[1].request_id, "pop-4-0000001");
}

#[test]
fn ten_thousand_people_generate_quickly() {
    let start = std::time::Instant::now();
    let population = Population::generate(&PopulationConfig::new(1, 10_000));
    let elapsed = start.elapsed();
    eprintln!("10,000 people in {elapsed:?}");
    assert_eq!(population.people.len(), 10_000);
    // Debug builds are ~10x slower than release; the bound is for debug.
    assert!(elapsed.as_secs_f64() < 20.0, "{elapsed:?}");
}

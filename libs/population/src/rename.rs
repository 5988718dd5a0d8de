//! Giving the population the customer ids a real platform assigned. The generator
//! draws its own UUIDs; an end-to-end run or `make demo` creates the customers through
//! `AccountService.CreateCustomer`, which assigns ids, and must then speak of the same
//! people in the signals it ingests.

use std::collections::HashMap;

use uuid::Uuid;

use crate::Population;

impl Population {
    /// Replaces every customer id in `renames` (generated id → assigned id) wherever it
    /// appears: people, both ends of social edges (a party id is the customer id's
    /// hyphenated form), behaviour, sightings and repayment outcomes. Ids not in
    /// `renames` stay as they are (parties scoring knows only from signals).
    pub fn rename_customers(&mut self, renames: &HashMap<Uuid, Uuid>) {
        let rename = |id: &mut Uuid| {
            if let Some(new) = renames.get(id) {
                *id = *new;
            }
        };
        let party_renames: HashMap<String, String> = renames
            .iter()
            .map(|(old, new)| (old.to_string(), new.to_string()))
            .collect();
        let rename_party = |party: &mut String| {
            if let Some(new) = party_renames.get(party.as_str()) {
                party.clone_from(new);
            }
        };
        for person in &mut self.people {
            rename(&mut person.customer_id);
        }
        for edge in &mut self.edges {
            rename_party(&mut edge.source_party_id);
            rename_party(&mut edge.target_party_id);
        }
        for event in &mut self.behaviour {
            rename(&mut event.customer_id);
        }
        for sighting in &mut self.sightings {
            rename(&mut sighting.customer_id);
        }
        for outcome in self.history.iter_mut().chain(self.future.iter_mut()) {
            rename(&mut outcome.customer_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PopulationConfig;

    #[test]
    fn renamed_customers_appear_under_their_new_id_everywhere_and_nowhere_under_the_old() {
        let population = Population::generate(&PopulationConfig::new(7, 60));
        let old = population.people[3].customer_id;
        let new = Uuid::from_u128(42);
        let mut renamed = population.clone();
        renamed.rename_customers(&HashMap::from([(old, new)]));

        let mentions = |population: &Population, id: Uuid| {
            let party = id.to_string();
            population
                .people
                .iter()
                .filter(|p| p.customer_id == id)
                .count()
                + population
                    .edges
                    .iter()
                    .filter(|e| e.source_party_id == party || e.target_party_id == party)
                    .count()
                + population
                    .behaviour
                    .iter()
                    .filter(|e| e.customer_id == id)
                    .count()
                + population
                    .sightings
                    .iter()
                    .filter(|s| s.customer_id == id)
                    .count()
                + population
                    .history
                    .iter()
                    .chain(&population.future)
                    .filter(|o| o.customer_id == id)
                    .count()
        };
        let before = mentions(&population, old);
        assert!(before > 10, "the person is mentioned: {before}");
        assert_eq!(mentions(&renamed, new), before);
        assert_eq!(mentions(&renamed, old), 0);
        assert_eq!(renamed.edges.len(), population.edges.len());
        // Everyone else is untouched.
        let other = population.people[4].customer_id;
        assert_eq!(mentions(&renamed, other), mentions(&population, other));
    }
}

//! SQL of the account service, one module per aggregate; each function is one
//! statement or one transaction, named for what it does.

pub mod audit;
pub mod customers;
pub mod lines;

//! SQL of the notification service, one module per aggregate; each function is one
//! statement or one transaction, named for what it does.

pub mod notifications;
pub mod preferences;
pub mod retention;

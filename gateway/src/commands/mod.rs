//! One module per subcommand.

pub mod apikey;
pub mod check;
pub mod health;
pub mod policy;
pub mod run;
pub mod stamp;
pub mod tls;
pub mod up;

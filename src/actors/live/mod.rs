//! The live side of a sale, for people watching it rather than buying: each product's stock as a feed that any
//! number of subscribers read without ever reaching an actor, and each order's changes pushed to its buyer alone.
//! Both are written by the actors that own the facts and read by the WebSocket connections; neither lets a slow
//! reader hold a writer back.

mod orders;
mod pace;
mod stock;

pub use orders::{OrderFeed, OrderWatch};
pub use pace::{Pace, StockPace};
pub use stock::{Audience, ProductLive, SaleSwitch, StockWatch};

//! The orders' subtree: the OrderProjector, which writes the journal into the `orders` table (and, as the order
//! lifecycle grows, the actors that move orders on).

pub mod projector;

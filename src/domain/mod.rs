//! Plain types of the sale: built by parsing, so every value that exists is valid. No I/O lives here.

mod account;
mod clock;
mod dead_letter;
mod events;
mod ids;
mod lifecycle;
mod live;
mod order;
mod parse;
mod pass;
mod payment;
mod product;
mod quantity;
mod schema;
mod standing;

pub use account::{PasswordHash, PlainPassword, Role, Username};
pub use clock::Timestamp;
pub use dead_letter::{Attempt, DeadLetter, JobKind, LetterFilter, LetterStatus, NewDeadLetter};
pub use events::{EventError, JournalEvent, OrderStep, Recorded, Reservation, Revoked, StockAdded, Voided};
pub use ids::{DeadLetterId, IdempotencyKey, OrderId, Position, ProductId, UserId};
pub use lifecycle::{Decision, OrderLife, OrderStatus, Refund, Step, StepAt, Timeline};
pub use live::{admit, Change, Closed, LiveStock, OrderChange, SaleState};
pub use order::{Order, OrderSteps, StockSnapshot};
pub use parse::ParseError;
pub use pass::PassRefusal;
pub use payment::{CallbackRefusal, ChargeResult, PaymentCallback, PaymentOrder, WebhookKey};
pub use product::{Product, ProductDraft, SalePhase, SaleWindow};
pub use quantity::{PaymentWindow, PerUserLimit, Quantity, RestockUnits, ShardCount, StockLevel};
pub use standing::{Ban, BanEnd, BanReason, BanSubject, TokenVersion};

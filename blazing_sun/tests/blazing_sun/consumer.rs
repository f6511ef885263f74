//! `checkout.finished` end to end.

//! One file per screen of the window: [`setup`] (pick the pair and the
//! options), [`running`] (progress, heatmap, Complete) and [`done`] (the
//! outcome, verification, fix-ups), [`verify_only`] (compare a pair
//! without copying, then repair), and [`flashing`] (a compressed image
//! written and checked, then its outcome).

pub mod done;
pub mod flashing;
pub mod running;
pub mod setup;
pub mod verify_only;

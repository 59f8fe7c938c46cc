//! One file per screen of the window: [`setup`] (pick the pair and the
//! options), [`running`] (progress, heatmap, Complete) and [`done`] (the
//! outcome, verification, fix-ups), and [`verify_only`] (compare a pair
//! without copying, then repair).

pub mod done;
pub mod running;
pub mod setup;
pub mod verify_only;

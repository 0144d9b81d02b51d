//! The packages of QCVN 102:2016 as truc reads and writes them: the corpus
//! of invalid packages, each refused naming its element, and the round
//! trips (XML, envelope) as property tests. One test binary, one link.

mod common;
mod examples;
mod invalid;
mod round_trip;

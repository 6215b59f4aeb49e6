//! placeholder (helper fills this in)

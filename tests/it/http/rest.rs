//! /rest/v1 (PostgREST-compatible) over the real schema, with reqwest.

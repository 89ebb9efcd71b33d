//! How long the patch parser takes on the worst `diff --git` headers, by input size, and
//! on a realistic patch as the anchor.
//!
//! ```text
//! cargo bench -p graftbench-analyzer --bench patch_parse
//! ```
//!
//! Every group reports throughput: a linear parser shows the same bytes per second at
//! every size. The sizes run up to the backend's request body limit (12 MiB).
//!
//! - `one_header`: one `diff --git x x x ...` line of the given size: spaces and no
//!   slash, the shape on which comparing the two halves at every space was quadratic
//!   (40 s for 1 MiB). It is refused for its length.
//! - `headers_at_bound`: that shape as long as [`MAX_GIT_HEADER_BYTES`] allows, repeated
//!   up to the given size; every header is accepted and split.
//! - `realistic`: a kernel-style patch of 5,000 diff lines.

use analyzer::patch::{self, PatchError, MAX_GIT_HEADER_BYTES, MAX_PATH_BYTES};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::fmt::Write;

const SIZES: [(&str, usize); 5] = [
    ("64KiB", 64 << 10),
    ("256KiB", 256 << 10),
    ("1MiB", 1 << 20),
    ("4MiB", 4 << 20),
    ("12MiB", 12 << 20),
];

fn one_header(size: usize) -> Vec<u8> {
    let mut input = String::from("diff --git x");
    input.push_str(&" x".repeat(size.saturating_sub(input.len() + 1) / 2));
    input.push('\n');
    input.into_bytes()
}

fn headers_at_bound(size: usize) -> Vec<u8> {
    let half = vec!["x"; MAX_PATH_BYTES / 2].join(" ");
    let one = format!("diff --git {half} {half}\nold mode 100644\nnew mode 100755\n");
    assert!(one.len() - 1 < MAX_GIT_HEADER_BYTES + 32);
    one.repeat(size / one.len()).into_bytes()
}

/// A kernel-style patch of 5,000 diff lines: many C files, each with hunks of context,
/// removed and added lines.
fn realistic() -> Vec<u8> {
    let mut out = String::new();
    let mut lines = 0;
    let mut file = 0;
    while lines < 5_000 {
        let path = format!("drivers/net/ethernet/vendor/part{file:03}.c");
        let _ = write!(
            out,
            "diff --git a/{path} b/{path}\nindex 1111111..2222222 100644\n--- a/{path}\n+++ b/{path}\n"
        );
        lines += 4;
        for hunk in 0..12 {
            let start = 40 + hunk * 60;
            let _ = writeln!(
                out,
                "@@ -{start},10 +{start},11 @@ static int vendor_rx_poll_{file}_{hunk}(struct napi_struct *napi, int budget)"
            );
            for i in 0..4 {
                let _ = writeln!(out, " \tstruct vendor_ring *ring = &priv->rx[{i}];");
            }
            let _ = writeln!(out, "-\tif (ring->count > budget)");
            let _ = writeln!(out, "+\tif (ring->count >= budget)");
            let _ = writeln!(out, "+\t\tvendor_ring_kick(ring);");
            for i in 0..5 {
                let _ = writeln!(out, " \tvendor_account(priv, ring, {i});");
            }
            lines += 13;
        }
        file += 1;
    }
    out.into_bytes()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_header");
    for (name, size) in SIZES {
        let input = one_header(size);
        assert!(matches!(
            patch::parse(&input),
            Err(PatchError::GitHeaderTooLong { .. })
        ));
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &input, |b, input| {
            b.iter(|| patch::parse(input))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("headers_at_bound");
    for (name, size) in SIZES {
        let input = headers_at_bound(size);
        assert!(patch::parse(&input).is_ok_and(|p| !p.files.is_empty()));
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &input, |b, input| {
            b.iter(|| patch::parse(input))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("realistic");
    let input = realistic();
    assert!(patch::parse(&input).is_ok());
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.bench_function("5000_lines", |b| b.iter(|| patch::parse(&input)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

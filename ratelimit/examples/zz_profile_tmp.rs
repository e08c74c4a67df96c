use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::num::NonZeroU32;
use durin_ratelimit::{CoarseClock, Gcra, GcraState, KeyedLimiter, SyncKeyedLimiter};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

fn cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/self/schedstat").unwrap();
    s.split_whitespace().next().unwrap().parse().unwrap()
}
#[derive(Default)]
struct Mul(u64);
impl Hasher for Mul {
    fn finish(&self) -> u64 { self.0 }
    fn write(&mut self, _: &[u8]) { unimplemented!() }
    fn write_u64(&mut self, v: u64) { let x = (v ^ 0x243F_6A88_85A3_08D3) as u128 * 0x9E37_79B9_7F4A_7C15u128; self.0 = (x as u64) ^ ((x >> 64) as u64); }
}
fn draws(n: u64) -> Vec<u64> { let mut s = 0x9E3779B97F4A7C15u64; (0..65536).map(|_| { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s % n }).collect() }
fn time(name: &str, iters: usize, mut f: impl FnMut(usize)) {
    for i in 0..iters/10 { f(i); }
    let t = cpu_ns(); let w = std::time::Instant::now();
    for i in 0..iters { f(i); }
    let cpu = cpu_ns() - t;
    println!("{name:<28} cpu {:>6.1} ns  wall {:>6.1} ns", cpu as f64 / iters as f64, w.elapsed().as_nanos() as f64 / iters as f64);
}
fn main() {
    let n: u64 = std::env::args().nth(1).map(|a| a.parse().unwrap()).unwrap_or(10_000);
    let iters = 20_000_000;
    let keys = draws(n);
    let gcra = Gcra::new(1, 1000, 1_000_000).unwrap();
    let rs = RandomState::new();
    time("siphash", iters, |i| { std::hint::black_box(rs.hash_one(keys[i & 65535])); });
    let mut st = GcraState::default(); let mut clock = CoarseClock::new();
    time("gcra direct", iters, |i| { if i % 256 == 0 { clock.refresh(); } std::hint::black_box(gcra.check(&mut st, clock.now_ms(), 1).allowed); });
    let mut lim: KeyedLimiter<u64, Gcra> = KeyedLimiter::new(gcra, 2 * n as usize).unwrap();
    for k in 0..n { let _ = lim.check(&k, clock.now_ms(), 1); }
    time("durin keyed sip", iters, |i| { if i % 256 == 0 { clock.refresh(); } std::hint::black_box(lim.check(&keys[i & 65535], clock.now_ms(), 1).allowed); });
    let mut lim4: KeyedLimiter<u64, Gcra, RandomState> = KeyedLimiter::with_hasher(gcra, 2 * n as usize, RandomState::new()).unwrap();
    for k in 0..n { let _ = lim4.check(&k, clock.now_ms(), 1); }
    time("durin keyed std sip", iters, |i| { if i % 256 == 0 { clock.refresh(); } std::hint::black_box(lim4.check(&keys[i & 65535], clock.now_ms(), 1).allowed); });
    let rsh = durin_ratelimit::keyed::RandomSipHash::new();
    time("our siphash", iters, |i| { std::hint::black_box(rsh.hash_one(keys[i & 65535])); });
    let mut lim2: KeyedLimiter<u64, Gcra, BuildHasherDefault<Mul>> = KeyedLimiter::with_hasher(gcra, 2 * n as usize, Default::default()).unwrap();
    for k in 0..n { let _ = lim2.check(&k, clock.now_ms(), 1); }
    time("durin keyed mul", iters, |i| { if i % 256 == 0 { clock.refresh(); } std::hint::black_box(lim2.check(&keys[i & 65535], clock.now_ms(), 1).allowed); });
    let lim3: SyncKeyedLimiter<u64, Gcra> = SyncKeyedLimiter::new(gcra, 2 * n as usize).unwrap();
    for k in 0..n { let _ = lim3.check(&k, clock.now_ms(), 1); }
    time("durin sync sip", iters, |i| { if i % 256 == 0 { clock.refresh(); } std::hint::black_box(lim3.check(&keys[i & 65535], clock.now_ms(), 1).allowed); });
    let g: DefaultKeyedRateLimiter<u64> = RateLimiter::keyed(Quota::per_second(NonZeroU32::new(1).unwrap()).allow_burst(NonZeroU32::new(1_000_000).unwrap()));
    for k in 0..n { let _ = g.check_key(&k); }
    time("governor keyed", iters, |i| { std::hint::black_box(g.check_key(&keys[i & 65535]).is_ok()); });
    println!("{:?}", lim.stats());
}

//! Pipelined batches: many requests in flight on one connection, their
//! responses matched by request ID in whatever order they come back.

use std::time::Instant;

use crate::connection::Connection;
use crate::endpoint::Endpoint;
use crate::{deadline_after, response_result, Call, Client, ClientError};

/// The most request bytes one window of a batch writes before reading its
/// responses. A server reads while it answers, but a bounded window keeps
/// a huge batch from filling both sockets' buffers while neither side
/// reads.
const WINDOW_WRITE_BYTES_MAX: usize = 256 * 1024;

type CallResult = Result<Vec<u8>, ClientError>;

impl Client {
    /// Makes many calls at once and returns their results in the order of
    /// `calls`.
    ///
    /// The calls are grouped by the port they go to. For each group, in
    /// turn, the client writes a window of requests (up to
    /// [`ClientOptions::pipeline_depth_max`] of them, or about 256 KiB),
    /// then reads the window's responses, which the server may send in any
    /// order, then goes on to the next window. A failure that closes the
    /// connection (timeout, socket or protocol error) fails every call of
    /// the group not yet answered; other groups go on.
    ///
    /// [`ClientOptions::pipeline_depth_max`]: crate::ClientOptions::pipeline_depth_max
    pub fn call_many(&self, calls: &[Call<'_>]) -> Vec<CallResult> {
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); self.shards.len().max(1)];
        for (index, call) in calls.iter().enumerate() {
            groups[self.endpoint_index(call.class, call.object)].push(index);
        }
        let mut results: Vec<Option<CallResult>> = (0..calls.len()).map(|_| None).collect();
        for (endpoint, group) in groups.iter().enumerate() {
            if !group.is_empty() {
                self.exchange_group(self.endpoint(endpoint), calls, group, &mut results);
            }
        }
        results
            .into_iter()
            .map(|result| result.expect("every call of every group was answered or failed"))
            .collect()
    }

    /// Sends the calls at `group` (indices into `calls`) to `endpoint`,
    /// window by window, and fills in their results.
    fn exchange_group(
        &self,
        endpoint: &Endpoint,
        calls: &[Call<'_>],
        group: &[usize],
        results: &mut [Option<CallResult>],
    ) {
        let mut next = 0;
        while next < group.len() {
            let deadline = deadline_after(self.options.timeout);
            let outcome =
                endpoint.with_connection(&self.layout, &self.options, deadline, |connection| {
                    let window = self.push_window(connection, calls, &group[next..], results);
                    next += window.consumed;
                    read_window(connection, deadline, &window, results)
                });
            if let Err(error) = outcome {
                // The connection is gone with whatever it had in flight;
                // retrying the rest of the group on a new one could take a
                // whole timeout per window, so the rest fails now.
                for &index in group {
                    if results[index].is_none() {
                        results[index] = Some(Err(error.duplicate()));
                    }
                }
                return;
            }
        }
    }

    /// Queues the next window of `pending` on `connection`. A request that
    /// cannot be sent (too large) gets its error at once.
    fn push_window(
        &self,
        connection: &mut Connection,
        calls: &[Call<'_>],
        pending: &[usize],
        results: &mut [Option<CallResult>],
    ) -> Window {
        let mut window = Window {
            first_id: connection.next_request_id(),
            calls: Vec::new(),
            consumed: 0,
        };
        for &index in pending {
            if window.calls.len() == self.options.pipeline_depth_max
                || connection.queued_bytes() >= WINDOW_WRITE_BYTES_MAX
            {
                break;
            }
            window.consumed += 1;
            let call = &calls[index];
            match connection.push_request(call.class, call.object, call.method, call.payload) {
                Ok(request_id) => {
                    assert_eq!(
                        request_id,
                        window.first_id.wrapping_add(window.calls.len() as u64)
                    );
                    window.calls.push(index);
                }
                Err(error) => results[index] = Some(Err(error)),
            }
        }
        window
    }
}

/// The requests of one window: `calls[k]` is the index of the call sent
/// with request ID `first_id + k`.
struct Window {
    first_id: u64,
    calls: Vec<usize>,
    /// How many of the pending calls the window took (sent or failed).
    consumed: usize,
}

/// Writes the window and reads one response per request in it.
fn read_window(
    connection: &mut Connection,
    deadline: Instant,
    window: &Window,
    results: &mut [Option<CallResult>],
) -> Result<(), ClientError> {
    connection.flush(deadline)?;
    for _ in 0..window.calls.len() {
        let (header, payload) = connection.read_response(deadline)?;
        let offset = header.request_id.wrapping_sub(window.first_id);
        let index = usize::try_from(offset)
            .ok()
            .and_then(|offset| window.calls.get(offset));
        match index {
            Some(&index) if results[index].is_none() => {
                results[index] = Some(response_result(header, payload));
            }
            // An ID outside the window, or one already answered.
            _ => return Err(connection.unexpected_response(header)),
        }
    }
    Ok(())
}

//! gRPC calls as bytes: the admission middleware reads each call's body
//! under the decode budget and takes gzip over from tonic, and `Export`
//! receives the message bytes (tonic's codec does no decoding) and decodes
//! them with the shared pipeline, on the blocking pool.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::{Buf, BytesMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

use super::{signal_of, to_status};
use crate::ingest::admission::Reservation;
use crate::ingest::decode::{Coding, Format};
use crate::ingest::http::read_body;
use crate::ingest::request::OtlpRequest;
use crate::ingest::Ingest;
use crate::tls::ConnInfo;

/// A gRPC message frame's header: compressed flag and length.
const FRAME_HEADER: usize = 5;

/// What admission handed to the call: its reservation and the coding of
/// its message. Taken once by `Export`.
#[derive(Clone)]
struct Admitted(Arc<Mutex<Option<(Reservation, Coding)>>>);

/// Reads the call's body under the decode budget before tonic sees it.
/// A gzip message has its frame's compressed flag cleared and its
/// `grpc-encoding` removed, so tonic passes the compressed bytes through
/// and `Export` decompresses them under the budget, off the executor.
pub(crate) async fn admit(
    State(ingest): State<Arc<Ingest>>,
    request: Request,
    next: Next,
) -> Response {
    let signal = signal_of(request.uri().path());
    let (mut parts, body) = request.into_parts();
    let mut reservation = ingest.admission.reservation();
    let limit = ingest.settings.max_request_bytes + FRAME_HEADER;
    let deadline = ingest.settings.body_timeout;
    let raw = match read_body(body, None, limit, deadline, &mut reservation).await {
        Ok(raw) => raw,
        Err(e) => return to_status(&ingest.refuse(signal, 0, e)).into_http(),
    };
    // tonic copies the frame into its own buffer before handing it over.
    if let Err(e) = reservation.grow(raw.len() as u64, "framing") {
        return to_status(&ingest.refuse(signal, 0, e)).into_http();
    }
    let gzip = parts
        .headers
        .get("grpc-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let mut raw = raw;
    let mut coding = Coding::Identity;
    if gzip && raw.first() == Some(&1) {
        let mut frame = raw
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        frame[0] = 0;
        raw = frame.freeze();
        coding = Coding::Gzip;
        parts.headers.remove("grpc-encoding");
    }
    parts
        .extensions
        .insert(Admitted(Arc::new(Mutex::new(Some((reservation, coding))))));
    next.run(Request::from_parts(parts, Body::from(raw))).await
}

/// One OTLP export method whose messages arrive as bytes.
pub(crate) struct Export<T> {
    ingest: Arc<Ingest>,
    request: PhantomData<fn() -> T>,
}

impl<T> Clone for Export<T> {
    fn clone(&self) -> Self {
        Export {
            ingest: self.ingest.clone(),
            request: PhantomData,
        }
    }
}

impl<T: OtlpRequest> Export<T> {
    pub(crate) fn new(ingest: Arc<Ingest>) -> Self {
        Export {
            ingest,
            request: PhantomData,
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<T: OtlpRequest> tower::Service<Request> for Export<T> {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = Method::<T> {
            ingest: self.ingest.clone(),
            request: PhantomData,
        };
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec::<T::Response>(PhantomData));
            let response = grpc.unary(method, request).await;
            Ok(response.map(Body::new))
        })
    }
}

/// The unary method tonic calls with the message bytes.
struct Method<T> {
    ingest: Arc<Ingest>,
    request: PhantomData<fn() -> T>,
}

impl<T: OtlpRequest> tonic::server::UnaryService<Bytes> for Method<T> {
    type Response = T::Response;
    type Future = BoxFuture<Result<tonic::Response<T::Response>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let ingest = self.ingest.clone();
        Box::pin(async move {
            let started = Instant::now();
            let admitted = request
                .extensions()
                .get::<Admitted>()
                .and_then(|a| a.0.lock().ok().and_then(|mut slot| slot.take()));
            let connection = request
                .extensions()
                .get::<ConnInfo>()
                .map(|i| i.work.clone());
            let raw = request.into_inner();
            let (mut reservation, coding) = match admitted {
                Some(admitted) => admitted,
                None => {
                    // Not admitted (a router without the middleware): hold
                    // the bytes now.
                    let mut reservation = ingest.admission.reservation();
                    reservation
                        .grow(raw.len() as u64, "body")
                        .map_err(|e| to_status(&ingest.refuse(T::SIGNAL, 0, e)))?;
                    (reservation, Coding::Identity)
                }
            };
            reservation.shrink_to(raw.len() as u64);
            let (decoded, reservation) = ingest
                .decode::<T>(
                    raw,
                    Format::Protobuf,
                    coding,
                    connection.as_ref(),
                    reservation,
                )
                .await
                .map_err(|e| to_status(&ingest.refuse(T::SIGNAL, 0, e)))?;
            let accepted = ingest
                .accept(decoded, reservation, started)
                .await
                .map_err(|e| to_status(&e))?;
            Ok(tonic::Response::new(accepted.response::<T>()))
        })
    }
}

/// Decodes nothing: the message bytes go to `Method` as they are.
struct RawCodec<R>(PhantomData<fn() -> R>);

impl<R: prost::Message + Send + 'static> Codec for RawCodec<R> {
    type Encode = R;
    type Decode = Bytes;
    type Encoder = ResponseEncoder<R>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ResponseEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

struct ResponseEncoder<R>(PhantomData<fn() -> R>);

impl<R: prost::Message> Encoder for ResponseEncoder<R> {
    type Item = R;
    type Error = Status;

    fn encode(&mut self, item: R, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::resource_exhausted(format!("response encoding: {e}")))
    }
}

//! SaslHandshake and SaslAuthenticate (every version), and the bare tokens that follow a v0
//! handshake. They act on the connection's [`Auth`], which the broker hands in; what the
//! exchange decides is in [`crate::security::sasl`].

use super::Effects;
use crate::codec::generated::ResponseBody;
use crate::codec::generated::sasl_authenticate::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use crate::codec::generated::sasl_handshake::{SaslHandshakeRequest, SaslHandshakeResponse};
use crate::codec::{ErrorCode, KStr};
use crate::io::CloseReason;
use crate::request::Req;
use crate::security::sasl::{Auth, Step};
use crate::state::State;

/// SaslHandshake: the mechanism is chosen, or the enabled ones are listed with the error and
/// the connection closes (Kafka closes after an unsupported mechanism; after
/// authentication, Kafka answers ILLEGAL_SASL_STATE and goes on).
pub(crate) fn handshake(auth: &mut Auth, st: &State, fx: &mut Effects, req: Req, m: &SaslHandshakeRequest) {
    let result = auth.handshake(&m.mechanism, req.version, &st.cfg.sasl_mechanisms);
    let mechanisms = st.cfg.sasl_mechanisms.iter().map(|m| KStr::from_static(m.name())).collect();
    let error_code = result.err().unwrap_or(ErrorCode::NONE);
    fx.respond(req, ResponseBody::SaslHandshake(SaslHandshakeResponse { error_code: error_code.0, mechanisms }));
    if error_code == ErrorCode::UNSUPPORTED_SASL_MECHANISM {
        fx.close(req.conn, CloseReason::Authentication("unsupported SASL mechanism"));
    } else if error_code != ErrorCode::NONE && auth.principal().is_none() {
        fx.close(req.conn, CloseReason::Authentication("a second SaslHandshake during the exchange"));
    }
}

/// SaslAuthenticate: one token of the exchange. After authentication it is answered with
/// ILLEGAL_SASL_STATE, as Kafka does; before a handshake the connection closes.
pub(crate) fn authenticate(auth: &mut Auth, st: &mut State, fx: &mut Effects, req: Req, m: &SaslAuthenticateRequest) {
    let mut resp = SaslAuthenticateResponse::default();
    match auth {
        Auth::Done(_) => {
            resp.error_code = ErrorCode::ILLEGAL_SASL_STATE.0;
            resp.error_message =
                Some(KStr::from_static("SaslAuthenticate request received after successful authentication"));
            return fx.respond(req, ResponseBody::SaslAuthenticate(resp));
        }
        Auth::Handshake | Auth::Exchange { raw: true, .. } => {
            return fx.close(req.conn, CloseReason::Authentication("SaslAuthenticate outside a v1 SASL exchange"));
        }
        Auth::Exchange { .. } => {}
    }
    match step(auth, st, &m.auth_bytes) {
        Step::Continue(token) | Step::Done { token, .. } => resp.auth_bytes = token.into(),
        Step::Failed { message, reason } => {
            resp.error_code = ErrorCode::SASL_AUTHENTICATION_FAILED.0;
            resp.error_message = Some(KStr::from(message));
            fx.respond(req, ResponseBody::SaslAuthenticate(resp));
            return fx.close(req.conn, CloseReason::Authentication(reason));
        }
    }
    fx.respond(req, ResponseBody::SaslAuthenticate(resp));
}

/// A bare token after a v0 handshake: the answer is a bare token too; a failure closes the
/// connection without one (the v0 exchange has no way to say why).
pub(crate) fn raw_token(auth: &mut Auth, st: &mut State, fx: &mut Effects, req: Req, token: &[u8]) {
    match step(auth, st, token) {
        Step::Continue(token) | Step::Done { token, .. } => fx.respond_bare(req, token.into()),
        Step::Failed { reason, .. } => fx.close(req.conn, CloseReason::Authentication(reason)),
    }
}

fn step(auth: &mut Auth, st: &mut State, token: &[u8]) -> Step {
    let mut nonce = [0u8; 18];
    st.secrets.fill(&mut nonce);
    auth.token(token, &st.credentials, &nonce)
}

//! What a route that answers itself sends (`redirect`, `respond`), compiled: status, headers
//! and body made once when the snapshot is compiled; a redirect's `Location` filled per request.
//! Pure.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::headers::{CompiledTemplate, TemplateVars};
use crate::config::model::{FixedResponse, Redirect, RouteAction};

/// The answer of a route that does not forward.
#[derive(Debug, Clone)]
pub enum EdgeAnswer {
    Redirect(RedirectAnswer),
    Respond(FixedAnswer),
}

/// A compiled `redirect`.
#[derive(Debug, Clone)]
pub struct RedirectAnswer {
    pub status: StatusCode,
    location: CompiledTemplate,
}

/// A compiled `respond`.
#[derive(Debug, Clone)]
pub struct FixedAnswer {
    pub status: StatusCode,
    /// `None` for a response without a body.
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

impl EdgeAnswer {
    /// The answer of a route with `action`; `None` for a route that forwards.
    pub fn compile(action: &RouteAction) -> Option<Self> {
        match action {
            RouteAction::Upstream(_) => None,
            RouteAction::Redirect(redirect) => {
                Some(Self::Redirect(RedirectAnswer::compile(redirect)))
            }
            RouteAction::Respond(response) => Some(Self::Respond(FixedAnswer::compile(response))),
        }
    }
}

impl RedirectAnswer {
    fn compile(redirect: &Redirect) -> Self {
        Self {
            status: StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::FOUND),
            location: CompiledTemplate::compile(&redirect.to),
        }
    }

    /// The `Location` for one request; `None` when the placeholders' values cannot be a header
    /// value (answer 400: the request's own host or path is at fault).
    pub fn location(&self, vars: &TemplateVars<'_>) -> Option<HeaderValue> {
        self.location.render(vars)
    }
}

impl FixedAnswer {
    fn compile(response: &FixedResponse) -> Self {
        Self {
            status: StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK),
            content_type: response
                .content_type
                .as_deref()
                .and_then(|text| HeaderValue::from_str(text).ok()),
            body: Bytes::copy_from_slice(response.body.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{Template, TemplatePart};

    #[test]
    fn redirects_fill_their_location_and_responses_are_ready() {
        let redirect = EdgeAnswer::compile(&RouteAction::Redirect(Redirect {
            to: Template {
                parts: vec![
                    TemplatePart::Literal("https://".into()),
                    TemplatePart::Host,
                    TemplatePart::Path,
                ],
            },
            status: 301,
        }));
        let Some(EdgeAnswer::Redirect(redirect)) = redirect else {
            panic!("a redirect");
        };
        let vars = TemplateVars {
            host: "example.com",
            path: "/a?b=1",
            scheme: "http",
            client_ip: None,
            request_id: "r",
        };
        assert_eq!(redirect.status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            redirect.location(&vars).unwrap(),
            "https://example.com/a?b=1"
        );

        let Some(EdgeAnswer::Respond(ok)) =
            EdgeAnswer::compile(&RouteAction::Respond(FixedResponse {
                status: 200,
                body: "ok\n".into(),
                content_type: Some("text/plain; charset=utf-8".into()),
            }))
        else {
            panic!("a response");
        };
        assert_eq!((ok.status, &ok.body[..]), (StatusCode::OK, &b"ok\n"[..]));
        assert_eq!(ok.content_type.unwrap(), "text/plain; charset=utf-8");
        assert!(EdgeAnswer::compile(&RouteAction::Upstream("u".into())).is_none());
    }
}

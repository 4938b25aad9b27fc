//! A plain page that says, in the person's language (words.rs), why what
//! they opened cannot be shown, with a way back: for pages a person opens,
//! where an API's JSON error would mean nothing to them.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::words::Lang;

pub(crate) fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page: `title` (the tab's), `heading`, `message` (said as an alert),
/// and `detail` (the technical cause, in English, for whoever they ask for
/// help), each already in the person's words.
pub(crate) fn page(
    status: StatusCode,
    lang: Lang,
    title: &str,
    heading: &str,
    message: &str,
    detail: Option<&str>,
) -> Response {
    let detail = detail.map_or(String::new(), |d| {
        format!(
            "<p class=\"hint\" id=\"problem-detail\" lang=\"en\">{}</p>",
            html_escape(d)
        )
    });
    let page = format!(
        "<!doctype html><html lang=\"{code}\"><head><meta charset=\"utf-8\"><title>{title} · Convene</title>\
         <link rel=\"stylesheet\" href=\"/assets/styles.css\"></head><body class=\"page\"><main class=\"card\">\
         <h1>{heading}</h1><p role=\"alert\" id=\"problem\">{message}</p>{detail}<p><a href=\"/\">{back}</a></p></main></body></html>",
        code = lang.code(),
        title = html_escape(title),
        heading = html_escape(heading),
        message = html_escape(message),
        back = html_escape(&lang.t("signin.problem-back", &[])),
    );
    let mut res = (status, Html(page)).into_response();
    res.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("accept-language, cookie"),
    );
    res
}

/// A meeting page that cannot be served just now (the database or the
/// cluster's Redis is away): said in words, and loaded again by the browser
/// in a moment (`Refresh`; browsers ignore Retry-After on a page), a few
/// seconds apart at random, so that a webinar's waiting pages do not all
/// come back at once to a server that is recovering.
pub(crate) fn meeting_unavailable(headers: &HeaderMap) -> Response {
    let lang = Lang::of_request(None, headers);
    let mut res = page(
        StatusCode::SERVICE_UNAVAILABLE,
        lang,
        &lang.t("meeting.unavailable-title", &[]),
        &lang.t("meeting.unavailable-heading", &[]),
        &lang.t("meeting.unavailable", &[]),
        None,
    );
    let after = HeaderValue::from(rand::random_range(3u32..=10));
    for name in [header::RETRY_AFTER, header::REFRESH] {
        res.headers_mut().insert(name, after.clone());
    }
    crate::http::no_store(res)
}

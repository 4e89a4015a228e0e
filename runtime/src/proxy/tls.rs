//! Telling a TLS failure (a certificate that does not verify, an upstream that refused ours)
//! from a connection that could not be made, so the client is told which it was.

use std::error::Error;

/// rustls' reason, if TLS is why `error` happened (`invalid peer certificate: UnknownIssuer`,
/// `received fatal alert: CertificateRequired`).
pub fn failure(error: &(dyn Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // The TLS stream reports rustls' error inside an `io::Error`, which reqwest's
        // connector wraps in another; an `io::Error`'s `source()` skips the error it wraps, and
        // an HTTP/2 connection's error holds its `io::Error` without naming it as its source.
        // So the chain goes down through the errors they wrap.
        let io = error.downcast_ref::<std::io::Error>().or_else(|| {
            error
                .downcast_ref::<h2::Error>()
                .and_then(h2::Error::get_io)
        });
        let inner = io.and_then(std::io::Error::get_ref);
        // A fatal alert that arrives after the handshake (TLS 1.3: a server refusing our
        // client certificate says so once we send the request) reaches us from rustls' reader
        // as text only.
        if let Some(alert) = inner
            .map(ToString::to_string)
            .filter(|text| text.starts_with("received fatal alert"))
        {
            return Some(alert);
        }
        next = match inner {
            Some(inner) => Some(inner),
            None => error.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::failure;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn rustls_reasons_are_found_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = Outer(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        assert_eq!(
            failure(&wrapped).as_deref(),
            Some("invalid peer certificate: UnknownIssuer")
        );
        // As reqwest's connector reports it: the TLS stream's `io::Error` in another.
        let tls = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let twice = Outer(std::io::Error::other(inner));
        assert_eq!(
            failure(&twice).as_deref(),
            Some("received fatal alert: CertificateRequired")
        );
        // After the handshake, as rustls' reader reports it.
        let late = Outer(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: CertificateRequired",
        ));
        assert_eq!(
            failure(&late).as_deref(),
            Some("received fatal alert: CertificateRequired")
        );
        let refused = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(failure(&refused), None);
    }
}

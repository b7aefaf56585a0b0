"""Where staging lives. Hard-coded, as many suites have it."""


class StagingConfig:
    def __init__(self, api_url: str):
        self.api_url = api_url

    @property
    def ws_url(self) -> str:
        return self.api_url.replace("https://", "wss://").replace("http://", "ws://") + "/ws"

    @property
    def health_url(self) -> str:
        return self.api_url + "/health"


STAGING = StagingConfig("https://api.staging.netra-example.invalid")
JWT_ENV = "STAGING_JWT"

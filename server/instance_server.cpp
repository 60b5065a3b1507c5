#include "server/instance_server.h"

#include "server/instance_server_impl.h"

namespace baton::server {

InstanceServer::InstanceServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
InstanceServer::~InstanceServer() { stop(); }

Result<std::unique_ptr<InstanceServer>> InstanceServer::start(ServerOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  BATON_RETURN_IF_ERROR(impl->start_http());
  return std::unique_ptr<InstanceServer>(new InstanceServer(std::move(impl)));
}

Status InstanceServer::attach_engine(std::unique_ptr<engine::Engine> engine) {
  return impl_->attach(std::move(engine));
}

uint16_t InstanceServer::port() const { return impl_->port(); }

std::string InstanceServer::kv_endpoint() const { return impl_->kv_endpoint(); }

void InstanceServer::stop() {
  if (impl_) impl_->stop();
}

}  // namespace baton::server

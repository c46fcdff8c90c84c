-- Status streams (`GET /v1/documents/{id}/events`) are driven by notifications, not polls:
-- every change of a document's status, pending version or error, and its removal, notifies
-- the channel `kb_document_status` with the document's id. The payload is only the id; a
-- stream re-reads the row under the caller's row level security.

CREATE FUNCTION public.notify_document_status()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
BEGIN
  PERFORM pg_notify('kb_document_status', OLD.id::text);
  RETURN NULL;
END;
$$;

CREATE TRIGGER knowledge_documents_notify_status
  AFTER UPDATE ON public.knowledge_documents
  FOR EACH ROW
  WHEN ((OLD.status, OLD.pending_hash, OLD.processing_error)
        IS DISTINCT FROM (NEW.status, NEW.pending_hash, NEW.processing_error))
  EXECUTE FUNCTION public.notify_document_status();

CREATE TRIGGER knowledge_documents_notify_removal
  AFTER DELETE ON public.knowledge_documents
  FOR EACH ROW
  EXECUTE FUNCTION public.notify_document_status();

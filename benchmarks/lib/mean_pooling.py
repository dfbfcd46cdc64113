"""A classifier that reads the mean of the encoder's token outputs instead of its first token.

Sentence-transformers checkpoints (all-MiniLM-L6-v2, all-mpnet-base-v2) were trained to put a
text's meaning into the mean over its tokens; their first token's output was never a training
target. transformers' own heads read the first token (RoBERTa, MPNet) or BERT's pooler over it,
so fine-tuning starts from features the checkpoint did not make meaningful. This head, for the
pooling benchmark only, is what sentence-transformers itself uses: masked mean, dropout, linear.
"""

from __future__ import annotations

import torch

from sentiment.train.step import MASKED_LABEL


class MeanPooledClassifier(torch.nn.Module):
    """classifier's encoder with a linear head over the masked mean of its last hidden states.

    Called like a transformers sequence classifier (input_ids, attention_mask, labels) and
    returning an object with .logits and .loss, so `sentiment train`'s step runs it unchanged.
    """

    def __init__(self, classifier, dropout: float):
        super().__init__()
        self.config = classifier.config
        self.encoder = classifier.base_model
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(self.config.hidden_size, self.config.num_labels)
        # transformers' initialisation for a new head
        torch.nn.init.normal_(self.classifier.weight, std=self.config.initializer_range)
        torch.nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids, attention_mask, labels=None, **encoder_inputs):
        from transformers.modeling_outputs import SequenceClassifierOutput

        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **encoder_inputs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(self.dropout(mean))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.float(), labels, ignore_index=MASKED_LABEL)
        return SequenceClassifierOutput(loss=loss, logits=logits)
